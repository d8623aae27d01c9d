"""Re-sighting benchmark on any data root with a group column (sightings, encounters).

About a quarter of the groups of every animal seen in at least four are held out; each recipe is
trained on the rest and scored over all validation pairs, over pairs from different groups only
(the honest number), and, where the metadata has a side column, same-side pairs; for each split
seed, then mean ± std. ``--no-metadata`` trains from a train.csv of the training photos alone
(no groups: the split inside training uses automatic near-duplicate groups), as a Kaggle
competitor would; the held-out groups and the scores are the same. See ``jaguar_reid.tasks.benchmark``.

    python bench/resighting.py --data ../shared/data/cattle [--recipes default,frozen] [--split-seeds 0,1,2]
    python bench/resighting.py --data ../shared/data/nyala --no-metadata

Skips cleanly (exit 0) when the data is absent. Results: OUT/NAME.json and OUT/NAME.md, OUT
defaulting to bench/out/<data folder name>[-no-metadata]; finished runs in OUT are reused.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from jaguar_reid.config import load_config
from jaguar_reid.tasks.benchmark import (
    Recipe,
    markdown_table,
    resighting_benchmark,
    summary_table,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

# key -> (description, preset, overrides). "default" is what `jaguar-reid train` does.
RECIPES = {
    "default": ("lite0-cpu (default): head, then fine-tune where photos are many", "lite0-cpu", []),
    "frozen": ("frozen lite0 (epoch 0 of the default)", "lite0-cpu", ["train.epochs=0"]),
    "head": ("head only (finetune.mode = never)", "lite0-cpu", ["finetune.mode=never"]),
    "head-320": ("head only @320 (the 0.3 default)", "lite0-cpu", ["finetune.mode=never", "data.image_size=320"]),
    "ft-always": ("head, then fine-tune always", "lite0-cpu", ["finetune.mode=always"]),
    "ft-no-lpft": ("fine-tune from ImageNet, no head stage (the lite0-finetune preset)", "lite0-finetune", []),
    "ft-ema": ("fine-tune + EMA 0.998", "lite0-cpu", ["finetune.mode=always", "finetune.ema_decay=0.998"]),
    "ft-no-layer-decay": ("fine-tune without layer decay", "lite0-cpu", ["finetune.mode=always", "finetune.layer_decay=1.0"]),
    "ft-random-batches": ("fine-tune, random batches (not pk_groups)", "lite0-cpu", ["finetune.mode=always", "finetune.sampler=random"]),
    "ft-freeze-3": ("fine-tune, three stages frozen", "lite0-cpu", ["finetune.mode=always", "finetune.freeze_stages=3"]),
    "ft-lr-1e-4": ("fine-tune, backbone lr 1e-4", "lite0-cpu", ["finetune.mode=always", "finetune.lr=1e-4"]),
    "ft-lr-5e-4": ("fine-tune, backbone and head lr 5e-4", "lite0-cpu", ["finetune.mode=always", "finetune.lr=5e-4", "finetune.head_lr=5e-4"]),
    "ft-6-epochs": ("fine-tune, 6 epochs", "lite0-cpu", ["finetune.mode=always", "finetune.epochs=6"]),
    "ft-from-imagenet": ("fine-tune from ImageNet weights, not from the head", "lite0-cpu", [
        "finetune.mode=always", "finetune.init=pretrained"]),
    "ft-128-10": ("fine-tune @128, 10 epochs", "lite0-cpu", ["finetune.mode=always", "finetune.image_size=128", "finetune.epochs=10"]),
    "ft-224-4-ld": ("fine-tune @224, 4 epochs, layer decay 0.85 (head @224)", "lite0-cpu", [
        "finetune.mode=always", "data.image_size=224", "finetune.image_size=224", "finetune.epochs=4", "finetune.layer_decay=0.85"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED / "cattle", help="data root with train.csv and metadata.csv")
    parser.add_argument("--group-column", default="sighting")
    parser.add_argument("--side-column", default="auto", help="metadata column of the side shown (auto: flank if present; none)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--recipes", default="default,frozen", help=f"comma-separated keys of: {', '.join(RECIPES)}")
    parser.add_argument("--split-seeds", default="0,1,2")
    parser.add_argument("--no-metadata", action="store_true", help="train from train.csv alone (automatic groups)")
    parser.add_argument("--set", action="append", default=[], help="extra section.key=value for every recipe")
    parser.add_argument("--results", default="results", help="name of the results files in OUT (NAME.json, NAME.md)")
    args = parser.parse_args()
    metadata = args.data / "metadata.csv"
    if not (args.data / "train.csv").exists() or not metadata.exists():
        print(f"skipped: no train.csv and metadata.csv in {args.data}")
        return
    side = args.side_column
    if side == "auto":
        side = "flank" if "flank" in pd.read_csv(metadata, nrows=1).columns else None
    elif side == "none":
        side = None
    out = args.out or Path("bench/out") / (args.data.name + ("-no-metadata" if args.no_metadata else ""))
    chosen = args.recipes.split(",")
    recipes = [Recipe(RECIPES[key][0], load_config(RECIPES[key][1], RECIPES[key][2] + args.set)) for key in chosen]
    start = time.time()
    rows = resighting_benchmark(recipes, args.data, metadata, out, args.group_column, side,
                                tuple(int(s) for s in args.split_seeds.split(",")),
                                share_features_from=RECIPES["default"][0] if "default" in chosen else None,
                                metadata_in_training=not args.no_metadata)
    out.mkdir(parents=True, exist_ok=True)
    command = f"python bench/resighting.py --data {args.data} --recipes {args.recipes} --split-seeds {args.split_seeds}"
    command += " --no-metadata" * args.no_metadata + "".join(f" --set {item}" for item in args.set)
    (out / f"{args.results}.json").write_text(json.dumps({"command": command, "recipes": {
        RECIPES[key][0]: {"preset": RECIPES[key][1], "overrides": RECIPES[key][2] + args.set} for key in chosen},
        "rows": rows}, indent=1))
    table = summary_table(rows) + "\n\n" + markdown_table(rows, steps=("raw", "+ flip TTA"))
    (out / f"{args.results}.md").write_text(f"`{command}`\n\n{table}\n")
    print(table)
    print(f"\n{(time.time() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
