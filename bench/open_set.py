"""Open-set benchmark: is this photo one of the catalogued animals, or a new one?

Trains the default recipe with a share of identities held out entirely (``split.unknown_fraction``)
and scores the open-set decision on the validation split: the training photos are the catalogue,
validation photos of trained animals are known queries, photos of the held-out animals are new.
Every way of scoring an individual (``max``, ``mean_top_k``) and of normalising the decision
(``none``, ``cohort``) is measured, on the Nyala re-sighting split (grouped by sighting, if the
data is present) and on the synthetic demo data. ``--chain`` measures the seed's post-processing
chain before the decision instead (its "normalisation" column names the step).

    python bench/open_set.py [--nyala ../shared/data/nyala] [--out bench/out/open_set] [--split-seeds 0]

Results: OUT/results.json and OUT/results.md. Finished runs in OUT are reused, not retrained.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from jaguar_reid.config import load_config
from jaguar_reid.data.synthetic import make_demo_data
from jaguar_reid.evaluation.open_set import calibrate_open_set
from jaguar_reid.files import atomic_write_json, atomic_write_text
from jaguar_reid.inference.embedder import Embedder
from jaguar_reid.postprocess import every_box, postprocess_steps
from jaguar_reid.runs import Run
from jaguar_reid.tasks import open_set_data
from jaguar_reid.tasks.benchmark import RESIGHTING
from jaguar_reid.tasks.demo import DEMO_OVERRIDES
from jaguar_reid.training.trainer import train

DEFAULT_NYALA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nyala"
UNKNOWN_FRACTION = 0.15
VARIANTS = [("max", 1, "none"), ("mean_top_k", 3, "none"), ("max", 1, "cohort"), ("mean_top_k", 3, "cohort")]
KEYS = ["rank1", "rank5", "auroc_known_vs_new", "new_caught", "known_called_new", "calibration_error"]


def score_variants(run: Run, dataset: str, split_seed: int) -> list[dict]:
    data = open_set_data(run, Embedder.from_runs([run]))
    rows = []
    for method, k, normalization in VARIANTS:
        calibration = calibrate_open_set(data.similarity, data.gallery_labels, data.query_labels, method, k,
                                         normalization=normalization)
        rows.append({"dataset": dataset, "split_seed": split_seed, "individual_score": method if method == "max" else f"mean of top {k}",
                     "normalization": normalization, "threshold": calibration.threshold, **calibration.metrics})
    return rows


def score_chain(run: Run, dataset: str, split_seed: int) -> list[dict]:
    """The seed's post-processing chain (AQE, k-reciprocal re-ranking, blend, clip) before the
    open-set decision: queries and catalogue photos form one set, as a batch of new photos would."""
    data = open_set_data(run, Embedder.from_runs([run]))
    combined, n_queries = np.concatenate([data.queries, data.gallery]), len(data.queries)
    rows = []
    for step, similarity in postprocess_steps(combined, every_box(run.config.postprocess, flip_tta=False)):
        calibration = calibrate_open_set(similarity[:n_queries, n_queries:], data.gallery_labels, data.query_labels)
        rows.append({"dataset": dataset, "split_seed": split_seed, "individual_score": "mean of top 3",
                     "normalization": step, **calibration.metrics})
    return rows


def markdown(rows: list[dict]) -> str:
    header = ["dataset", "split seed", "individual score", "normalisation", "known/new queries", "rank-1", "rank-5",
              "AUROC known vs new", "new caught", "known called new", "calibration error"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['split_seed']} | {r['individual_score']} | {r['normalization']} | "
                     f"{r['n_known_queries']}/{r['n_unknown_queries']} | " + " | ".join(f"{r[k]:.3f}" for k in KEYS) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nyala", type=Path, default=DEFAULT_NYALA)
    parser.add_argument("--out", type=Path, default=Path("bench/out/open_set"))
    parser.add_argument("--split-seeds", default="0")
    parser.add_argument("--datasets", default="synthetic,nyala", help="which of synthetic,nyala to run")
    parser.add_argument("--results", default="results", help="name of the results files in OUT (NAME.json, NAME.md)")
    parser.add_argument("--chain", action="store_true", help="score each step of the post-processing chain instead")
    args = parser.parse_args()
    score = score_chain if args.chain else score_variants
    datasets = set(args.datasets.split(","))
    start, rows = time.time(), []
    for seed in (int(s) for s in args.split_seeds.split(",")):
        if "synthetic" in datasets:
            synthetic = args.out / "synthetic_data"
            if not (synthetic / "train.csv").exists():
                make_demo_data(synthetic, identities=31, scale=0.5, seed=0)
            cfg = load_config("lite0-cpu", DEMO_OVERRIDES).with_overrides({"split.split_seed": seed,
                                                                          "split.unknown_fraction": UNKNOWN_FRACTION})
            train(cfg, synthetic, args.out / "synthetic" / f"split_{seed}")
            rows += score(Run(args.out / "synthetic" / f"split_{seed}"), "synthetic (31 jaguars)", seed)
        if "nyala" in datasets and (args.nyala / "train.csv").exists():
            cfg = load_config("lite0-cpu").with_overrides({
                **RESIGHTING, "split.split_seed": seed, "split.group_column": "sighting",
                "split.metadata_csv": str(args.nyala / "metadata.csv"), "split.unknown_fraction": UNKNOWN_FRACTION})
            train(cfg, args.nyala, args.out / "nyala" / f"split_{seed}")
            rows += score(Run(args.out / "nyala" / f"split_{seed}"), "Nyala re-sighting (237 nyala)", seed)
    atomic_write_json(args.out / f"{args.results}.json", {"seconds": time.time() - start, "unknown_fraction": UNKNOWN_FRACTION,
                                                  "rows": rows})
    atomic_write_text(args.out / f"{args.results}.md", markdown(rows))
    print(markdown(rows))
    print(json.dumps({"seconds": round(time.time() - start)}))


if __name__ == "__main__":
    main()
