"""Real-data benchmark on the Nyala set (../shared/data/nyala): the re-sighting protocol.

About a quarter of the sightings of every animal seen at least four times are held out; each
recipe is trained on the rest and scored over all validation pairs, over pairs from different
sightings only, same flank only, and both, for three split seeds (mean ± std). Frozen ImageNet
features of the same backbone are a recipe too (epochs = 0). See ``jaguar_reid.benchmark``.

    python bench/nyala.py [--data ../shared/data/nyala] [--out bench/out/nyala] [--recipes a,b] [--split-seeds 0,1,2]

Skips cleanly (exit 0) when the data is absent. Results: OUT/results.json and OUT/results.md
(``--results NAME`` for other names; finished runs in OUT are reused, not retrained).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from jaguar_reid.benchmark import Recipe, markdown_table, resighting_benchmark
from jaguar_reid.config import load_config

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nyala"

# name -> (preset, overrides). The first is the default preset; the others share its cached features.
RECIPES = {
    "lite0-cpu (default): head-only, identity classes, ArcFace m 0.1 s 10": ("lite0-cpu", []),
    "frozen lite0 @320 (epoch 0 of the default)": ("lite0-cpu", ["train.epochs=0"]),
    "head-only, classes = identity x flank": ("lite0-cpu", ["train.class_column=flank"]),
    "head-only, ArcFace m 0.3 s 30 (the earlier margin)": ("lite0-cpu", ["model.arcface_margin=0.3", "model.arcface_scale=30"]),
    "head-only, 512-d random linear neck": ("lite0-cpu", ["model.embedding_dim=512"]),
    "head-only, P x K sampler + batch-hard triplet 1.0": ("lite0-cpu", ["train.sampler=pk", "loss.triplet_weight=1.0"]),
    "head-only, plain view only (no augmented views)": ("lite0-cpu", ["train.feature_views=0"]),
    "lite0-finetune (the earlier default: fine-tune at 224)": ("lite0-finetune", []),
    "frozen lite0 @224 (epoch 0 of lite0-finetune)": ("lite0-finetune", ["train.epochs=0"]),
    "head-only, P x K across sightings (pk_groups) + batch-hard triplet 1.0": (
        "lite0-cpu", ["train.sampler=pk_groups", "loss.triplet_weight=1.0"]),
    "head-only, P x K across sightings (pk_groups), ArcFace only": ("lite0-cpu", ["train.sampler=pk_groups"]),
}
DEFAULT = "lite0-cpu (default): head-only, identity classes, ArcFace m 0.1 s 10"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("bench/out/nyala"))
    parser.add_argument("--recipes", default=",".join(str(i) for i in range(len(RECIPES))),
                        help="comma-separated indices into RECIPES (default: all)")
    parser.add_argument("--split-seeds", default="0,1,2")
    parser.add_argument("--results", default="results", help="name of the results files in OUT (NAME.json, NAME.md)")
    args = parser.parse_args()
    if not (args.data / "train.csv").exists():
        print(f"skipped: no Nyala data at {args.data}")
        return
    names = list(RECIPES)
    chosen = [names[int(i)] for i in args.recipes.split(",")]
    recipes = [Recipe(name, load_config(*RECIPES[name])) for name in chosen]
    start = time.time()
    rows = resighting_benchmark(recipes, args.data, args.data / "metadata.csv", args.out,
                                split_seeds=tuple(int(s) for s in args.split_seeds.split(",")),
                                share_features_from=DEFAULT if DEFAULT in chosen else None)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.results}.json").write_text(json.dumps({"command": "python bench/nyala.py", "recipes": {
        name: {"preset": RECIPES[name][0], "overrides": RECIPES[name][1]} for name in chosen}, "rows": rows}, indent=1))
    table = markdown_table(rows, steps=("raw", "+ flip TTA", "+ transform (clip)"))
    (args.out / f"{args.results}.md").write_text(table + "\n")
    print(table)
    print(f"\n{(time.time() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
