"""Real photos (the shared Nyala set, when present): the data layer, the grouped split and
frozen pretrained features behave on real data, not only on synthetic jaguars."""

import numpy as np
import pandas as pd
import pytest

from conftest import NYALA
from jaguar_reid.config import load_config
from jaguar_reid.data import load_competition
from jaguar_reid.data.dataset import ImageSet
from jaguar_reid.evaluation.metrics import compute_metrics, cosine_similarity
from jaguar_reid.inference.embed import embed_images
from jaguar_reid.models import create_reid_model
from jaguar_reid.training.trainer import build_split

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
