"""The re-sighting benchmark on tiny synthetic data with fake sightings and flanks."""

import pandas as pd
import pytest

from jaguar_reid.config import load_config
from jaguar_reid.data.split import AUTO_GROUPS
from jaguar_reid.data.synthetic import make_demo_data
from jaguar_reid.runs import Run
from jaguar_reid.tasks.benchmark import (
    Recipe,
    markdown_table,
    resighting_benchmark,
    summary_table,
)
from jaguar_reid.training import features

SMALL = ["model.backbone=resnet18", "model.pretrained=none", "data.image_size=32", "train.epochs=1", "train.feature_views=1"]


def _data(tmp_path):
    root = make_demo_data(tmp_path / "data", identities=4, scale=0.35, seed=3)
    table = pd.read_csv(root / "train.csv")
    table["sighting"] = [f"{g}_{i // 2}" for i, g in enumerate(table["ground_truth"])]
    table["flank"] = ["left(1)" if i % 5 == 0 else ("left" if i % 2 else "right") for i in range(len(table))]
    table.to_csv(tmp_path / "meta.csv", index=False)
    return root


@pytest.mark.slow
def test_resighting_benchmark_scores_every_pair_subset_and_shares_features(tmp_path, monkeypatch):
    root = _data(tmp_path)
    cached = []
    original = features.embed_images
    monkeypatch.setattr(features, "embed_images", lambda *a, progress=None, **k: (
        cached.append(progress), original(*a, progress=progress, **k))[1])
    recipes = [Recipe("default", load_config("lite0-cpu", SMALL)),
               Recipe("other margin", load_config("lite0-cpu", SMALL + ["model.arcface_margin=0.3"]))]
    rows = resighting_benchmark(recipes, root, tmp_path / "meta.csv", tmp_path / "out", split_seeds=(0, 1),
                                share_features_from="default")
    assert {r["pairs"] for r in rows} == {"all pairs", "other groups", "same side", "other groups, same side"}
    assert {r["split_seed"] for r in rows} == {0, 1}
    # The margin does not change the pooled features: only the first recipe embedded the training
    # images (plain + 1 view, per split seed); the second read the shared cache.
    assert sum(1 for p in cached if p and p.startswith("caching train")) == 2 * 2
    text = markdown_table(rows)
    assert text.count("\n") == 3 and "± " in text and text.splitlines()[2].endswith("| 2 |")
    summary = summary_table(rows)
    assert summary.count("\n") == 3 and "| head x2 |" in summary


@pytest.mark.slow
def test_without_metadata_training_sees_neither_sightings_nor_held_out_photos(tmp_path):
    root = _data(tmp_path)
    recipe = Recipe("default", load_config("lite0-cpu", SMALL + ["train.refit=always"]))
    with_meta = resighting_benchmark([recipe], root, tmp_path / "meta.csv", tmp_path / "a", split_seeds=(0,))
    # With sightings known the validation split is the held-out sightings: refitting would train on them.
    assert not any(r["refit"] for r in with_meta)
    assert not (tmp_path / "a" / "default" / "split_0" / "stages" / "head_all").exists()
    without = resighting_benchmark([recipe], root, tmp_path / "meta.csv", tmp_path / "b", split_seeds=(0,),
                                   metadata_in_training=False)
    # Scored on the same held-out sightings either way.
    assert {r["n_val_images"] for r in without} == {r["n_val_images"] for r in with_meta}
    trained_on = set(pd.read_csv(tmp_path / "b" / "train_csv_split_0" / "train.csv")["filename"])
    split = Run(tmp_path / "b" / "default" / "split_0").split
    assert set(split.train) | set(split.val) == trained_on  # the held-out photos never reached training
    # From train.csv alone the refit trains on every photo of that train.csv, and on nothing held out.
    assert all(r["refit"] for r in without)
    assert "| head + refit x1 |" in summary_table(without) and "| head x1 |" in summary_table(with_meta)
    assert set(Run(tmp_path / "b" / "default" / "split_0" / "stages" / "head_all").split.train) == trained_on
    assert split.group_column == AUTO_GROUPS
    assert len(trained_on) + with_meta[0]["n_val_images"] == len(pd.read_csv(root / "train.csv"))
