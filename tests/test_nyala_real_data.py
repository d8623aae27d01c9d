"""Real photos (the shared Nyala set, when present): the data layer, the grouped split, frozen
pretrained features and the catalogue behave on real data, not only on synthetic jaguars."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jaguar_reid.config import load_config
from jaguar_reid.data import load_competition
from jaguar_reid.data.dataset import ImageSet
from jaguar_reid.data.split import build_split
from jaguar_reid.evaluation.metrics import compute_metrics
from jaguar_reid.inference.embed import embed_images
from jaguar_reid.models import create_reid_model
from jaguar_reid.postprocess import cosine_similarity
from jaguar_reid.tasks import create_catalog

from conftest import NYALA

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (NYALA / "train.csv").exists(), reason="no Nyala data")]


def test_grouped_split_keeps_sightings_together_and_frozen_features_beat_chance():
    competition = load_competition(NYALA)
    assert len(competition.train) == 1620 and competition.train["ground_truth"].nunique() == 237
    cfg = load_config("lite0-finetune", ["split.group_column=sighting", f"split.metadata_csv={NYALA / 'metadata.csv'}",
                                    "data.image_size=160"])
    split = build_split(cfg, competition)
    meta = pd.read_csv(NYALA / "metadata.csv", dtype=str).set_index("filename")
    assert not set(meta.loc[split.train, "sighting"]) & set(meta.loc[split.val, "sighting"])

    # Frozen ImageNet features on the 60 validation identities with the most images.
    val = meta.loc[split.val]
    keep = val["ground_truth"].isin(val["ground_truth"].value_counts().index[:60])
    files, labels = val.index[keep].tolist(), val.loc[keep, "ground_truth"].to_numpy()
    model = create_reid_model(cfg.model)
    images = ImageSet(competition.train_paths(files), None, cfg.data.image_size, cfg.data.alpha)
    metrics = compute_metrics(cosine_similarity(embed_images(model, images, progress=None)), labels)
    rng = np.random.default_rng(0)
    chance = np.mean([compute_metrics(rng.random((len(labels), len(labels))), labels)["identity_balanced_map"]
                      for _ in range(3)])
    assert metrics["identity_balanced_map"] > 2 * chance


@pytest.mark.slow
def test_catalogue_on_real_photos(tmp_path):
    """Train on 40 nyala (5 of them held out as new animals), catalogue the training photos and
    identify the held-out sightings: the catalogue commands' path on real photos."""
    from jaguar_reid.training.trainer import train

    meta = pd.read_csv(NYALA / "metadata.csv", dtype=str)
    sightings = meta.groupby("ground_truth")["sighting"].nunique()
    chosen = sightings[sightings >= 4].sort_index().index[:40]
    subset = meta[meta["ground_truth"].isin(chosen)]
    (tmp_path / "data" / "train").mkdir(parents=True)
    for name in subset["filename"]:
        (tmp_path / "data" / "train" / name).symlink_to(NYALA / "train" / name)
    subset[["filename", "ground_truth"]].to_csv(tmp_path / "data" / "train.csv", index=False)
    subset.to_csv(tmp_path / "meta.csv", index=False)
    cfg = load_config("lite0-cpu", ["data.image_size=160", "train.feature_views=1", "train.epochs=10",
                                    "split.group_column=sighting", f"split.metadata_csv={tmp_path / 'meta.csv'}",
                                    "split.min_groups=4", "split.val_fraction=0.25", "split.unknown_fraction=0.125"])
    train(cfg, tmp_path / "data", tmp_path / "run")

    catalog = create_catalog(tmp_path / "nyala.db", [tmp_path / "run"], device="cpu")
    from jaguar_reid.runs import Run

    split = Run(tmp_path / "run").split
    known = subset[subset["filename"].isin(split.train)]
    known[["filename", "ground_truth"]].to_csv(tmp_path / "known.csv", index=False)
    report = catalog.add(tmp_path / "data" / "train", labels=tmp_path / "known.csv", metadata=tmp_path / "meta.csv")
    assert report.labelled + len(report.duplicates) >= len(known) and report.queued > 0
    answers = dict(zip(subset["filename"], subset["ground_truth"]))
    results = catalog.identify([tmp_path / "data" / "train" / name for name in split.val])
    rank5 = np.mean([answers[Path(r.photo).name] in [c.individual for c in r.candidates] for r in results])
    assert rank5 > 3 * 5 / 35  # 35 catalogued animals: chance is 5/35
    assert catalog.calibration.metrics["n_unknown_queries"] == len(split.unknown)
