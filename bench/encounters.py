"""Photo-level against encounter-level identification on held-out sightings of real animals.

For each trained run of the re-sighting benchmark (``bench/resighting.py``: a quarter of the
sightings of every animal seen in four or more held out), its training photos are the catalogue
and its held-out sightings are the new photos. Photo level: each photo is a query. Encounter
level: each held-out sighting is one query, its photos' individual scores pooled
(``evaluation.open_set.pool_by_encounter``: their mean, or the best single photo's). Both are calibrated as ``calibrate_run`` does (each
known query also plays a new animal by leaving its own individual out, threshold at 5% of known
animals called new) and report rank-1, rank-5, AUROC known-vs-new and the share of new animals
caught at that threshold; mean ± std over the runs given (one per split seed).

    python bench/encounters.py --name nyala --runs "bench/out/nyala/head-only-finetune-mode-never/split_*"
    python bench/encounters.py --name cattle --runs "bench/out/cattle-ft16/lite0-cpu-default*/split_*"

Results: bench/out/encounters/NAME.json and NAME.md.
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import numpy as np

from jaguar_reid.evaluation.open_set import calibrate_open_set
from jaguar_reid.files import atomic_write_json, atomic_write_text
from jaguar_reid.inference.embedder import Embedder
from jaguar_reid.runs import Run
from jaguar_reid.tasks import open_set_data

KEYS = {"rank1": "rank-1", "rank5": "rank-5", "auroc_known_vs_new": "AUROC known vs new", "new_caught": "new caught at 5%"}


def measure(run: Run) -> list[dict]:
    data = open_set_data(run, Embedder.from_runs([run]))
    if data.query_encounters is None:
        raise SystemExit(f"{run.path}: its split has no groups (sightings); train it with a group column")
    similarity = data.similarity
    rows = []
    for level, encounters, pooling in (("photo", None, "mean"), ("encounter, best photo", data.query_encounters, "max"),
                                       ("encounter", data.query_encounters, "mean")):
        calibration = calibrate_open_set(similarity, data.gallery_labels, data.query_labels, run.config.open_set.method,
                                         run.config.open_set.k, 0.05, simulate_unknown=data.simulate_unknown,
                                         query_encounters=encounters, pooling=pooling)
        m = calibration.metrics
        rows.append({"run": str(run.path), "split_seed": run.split.split_seed, "level": level,
                     "queries": m["n_known_queries"], **{k: m[k] for k in KEYS}})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| level | queries (known) | " + " | ".join(KEYS.values()) + " | runs |", "|---|---:|" + "---:|" * len(KEYS) + "---:|"]
    for level in ("photo", "encounter, best photo", "encounter"):
        chosen = [r for r in rows if r["level"] == level]
        cells = [f"{np.mean([r[k] for r in chosen]):.3f} ± {np.std([r[k] for r in chosen]):.3f}" for k in KEYS]
        lines.append(f"| {level} | {np.mean([r['queries'] for r in chosen]):.0f} | " + " | ".join(cells) + f" | {len(chosen)} |")
    ratio = np.mean([r["rank1"] for r in rows if r["level"] == "encounter"]) / np.mean([r["rank1"] for r in rows if r["level"] == "photo"])
    return "\n".join(lines) + f"\n\nencounter-level rank-1 / photo-level rank-1: {ratio:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", required=True, help="glob of run folders (one per split seed)")
    parser.add_argument("--name", required=True, help="name of the results files")
    parser.add_argument("--out", type=Path, default=Path("bench/out/encounters"))
    args = parser.parse_args()
    runs = sorted(glob.glob(args.runs))
    if not runs:
        print(f"skipped: no run folder matches {args.runs}")
        return
    rows = [row for path in runs for row in measure(Run(path))]
    text = table(rows)
    command = f'python bench/encounters.py --name {args.name} --runs "{args.runs}"'
    atomic_write_json(args.out / f"{args.name}.json", {"command": command, "rows": rows})
    atomic_write_text(args.out / f"{args.name}.md", f"`{command}`\n\n{text}\n")
    print(json.dumps(rows, indent=1))
    print(text)


if __name__ == "__main__":
    main()
