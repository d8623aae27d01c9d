"""The re-sighting benchmark on tiny synthetic data with fake sightings and flanks."""

import pandas as pd

from jaguar_reid.benchmark import Recipe, markdown_table, resighting_benchmark
from jaguar_reid.config import load_config
from jaguar_reid.data.synthetic import make_demo_data


def test_resighting_benchmark_scores_every_pair_subset_and_shares_features(tmp_path):
    root = make_demo_data(tmp_path / "data", identities=4, scale=0.35, seed=3)
    table = pd.read_csv(root / "train.csv")
    table["sighting"] = [f"{g}_{i // 2}" for i, g in enumerate(table["ground_truth"])]
    table["flank"] = ["left(1)" if i % 5 == 0 else ("left" if i % 2 else "right") for i in range(len(table))]
    table.to_csv(tmp_path / "meta.csv", index=False)
    small = ["model.backbone=resnet18", "model.pretrained=none", "data.image_size=32", "train.epochs=1", "train.feature_views=1"]
    recipes = [Recipe("default", load_config("lite0-cpu", small)),
               Recipe("other margin", load_config("lite0-cpu", small + ["model.arcface_margin=0.3"]))]
    rows = resighting_benchmark(recipes, root, tmp_path / "meta.csv", tmp_path / "out", split_seeds=(0, 1),
                                share_features_from="default")
    assert {r["pairs"] for r in rows} == {"all pairs", "other groups", "same side", "other groups, same side"}
    assert {r["split_seed"] for r in rows} == {0, 1}
    # The margin does not change the pooled features: the second recipe reused the first one's cache.
    shared = sorted(p.name for p in (tmp_path / "out" / "other-margin" / "split_0" / "embeddings").glob("train-*.npy"))
    assert shared == sorted(p.name for p in (tmp_path / "out" / "default" / "split_0" / "embeddings").glob("train-*.npy"))
    text = markdown_table(rows)
    assert text.count("\n") == 3 and "± " in text and text.splitlines()[2].endswith("| 2 |")
