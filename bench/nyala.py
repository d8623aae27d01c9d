"""Real-data benchmark: 1,620 photos of 237 individual nyala (../shared/data/nyala).

Validation is grouped by sighting, so the left and right photo of one sighting never straddle
the split. On that split it compares the same backbone's frozen ImageNet features with the
``lite0-cpu`` preset trained, and the effect of each post-processing box, with and without flip
TTA (a nyala's flanks carry different stripes, so a mirror image is another pattern). Every
metric is also reported without same-sighting pairs: those photos share background and light,
and matching them says little about recognising an animal.

    python bench/nyala.py [--data ../shared/data/nyala] [--out bench/out/nyala] [--set key=value ...]

Skips cleanly (exit 0) when the data is absent. Results: OUT/results.json and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from jaguar_reid.config import load_config
from jaguar_reid.data.split import Split
from jaguar_reid.evaluation.metrics import METRIC_NAMES, compute_metrics
from jaguar_reid.inference.pipeline import ablation, ensemble_embeddings, format_table
from jaguar_reid.training.trainer import train

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nyala"


def markdown(rows: list[tuple[str, dict, dict]]) -> str:
    lines = ["| | identity-balanced mAP | mAP | top-1 | pair AUC | identity-balanced mAP, other sightings only |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, all_pairs, cross in rows:
        lines.append(f"| {name} | {all_pairs['identity_balanced_map']:.4f} | {all_pairs['retrieval_map']:.4f} | "
                     f"{all_pairs['retrieval_top1']:.4f} | {all_pairs['pair_auc']:.4f} | {cross['identity_balanced_map']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("bench/out/nyala"))
    parser.add_argument("--config", default="lite0-cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override, e.g. train.class_column=flank (repeatable)")
    args = parser.parse_args()
    if not (args.data / "train.csv").exists():
        print(f"skipped: no Nyala data at {args.data}")
        return
    grouping = ["split.group_column=sighting", f"split.metadata_csv={args.data / 'metadata.csv'}"]
    cfg = load_config(args.config, grouping + args.overrides)
    frozen_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 0})})
    args.out.mkdir(parents=True, exist_ok=True)

    start = time.time()
    train(frozen_cfg, args.data, args.out / "frozen", overwrite=True)
    start_training = time.time()
    summary = train(cfg, args.data, args.out / "trained")
    training_seconds = time.time() - start_training

    split = Split.load(args.out / "trained" / "split.json")
    meta = pd.read_csv(args.data / "metadata.csv", dtype=str).set_index("filename")
    labels = meta.loc[split.val, "ground_truth"].to_numpy()
    sightings = meta.loc[split.val, "sighting"].to_numpy()
    same_sighting = sightings[:, None] == sightings[None, :]
    paths = [args.data / "train" / name for name in split.val]

    frozen = ensemble_embeddings([args.out / "frozen"], paths, flip=False)
    raw = ensemble_embeddings([args.out / "trained"], paths, flip=False)
    tta = ensemble_embeddings([args.out / "trained"], paths, flip=True)
    rows = [("frozen ImageNet features", compute_metrics(frozen @ frozen.T, labels),
             compute_metrics(np.where(same_sighting, np.nan, frozen @ frozen.T), labels))]
    for flip in (False, True):
        chain = ablation(raw, tta, labels, cfg.postprocess, flip=flip)
        cross = ablation(raw, tta, labels, cfg.postprocess, flip=flip, exclude=same_sighting)
        for (name, metrics), (_, cross_metrics) in zip(chain, cross):
            if flip and name == "raw":
                continue  # the same row as without flip TTA
            label = "trained, raw" if name == "raw" else f"{'[flip TTA] ' if flip else '[no flip] '}{name}"
            rows.append((label, metrics, cross_metrics))

    result = {
        "command": "python bench/nyala.py " + " ".join(f"--set {o}" for o in args.overrides),
        "config": cfg.model_dump(mode="json"),
        "n_val_images": len(split.val), "n_val_identities": int(len(set(labels))),
        "n_train_images": len(split.train),
        "training_seconds": round(training_seconds, 1), "wall_seconds": round(time.time() - start, 1),
        "best_epoch": summary["best_epoch"],
        "rows": [{"step": n, "all_pairs": {k: m[k] for k in METRIC_NAMES}, "other_sightings": {k: c[k] for k in METRIC_NAMES}} for n, m, c in rows],
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    (args.out / "results.md").write_text(markdown(rows) + "\n")
    print(format_table([(n, m) for n, m, _ in rows]))
    print()
    print(markdown(rows))
    print(f"\ntraining {training_seconds / 60:.1f} min, total {(time.time() - start) / 60:.1f} min; "
          f"{len(split.val)} validation images of {len(set(labels))} identities")


if __name__ == "__main__":
    main()
