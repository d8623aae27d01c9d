"""The head-only feature cache: the frozen backbone's pooled features of the training images
(plain and augmented views) and of the validation images, embedded once (by onnxruntime on the
CPU) and kept in the run folder; and the near-duplicate groups made from such features."""

from __future__ import annotations

import copy
import hashlib
import warnings

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..config import Config
from ..data.competition import Competition
from ..data.dataset import ImageSet, train_transform
from ..data.groups import AutoGroups, near_duplicate_groups
from ..devices import resolve_device
from ..inference.embed import embed_images
from ..inference.onnx import OnnxModule
from ..models.reid import ReIDModel, create_reid_model
from ..runs import Run

_FEATURE_FIELDS = {"model": {"backbone", "pretrained", "weights", "pooling", "gem_p"}}


class _Pooled(nn.Module):
    """The model up to pooling, as a module to embed with."""

    def __init__(self, model: ReIDModel):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.pooled(images)


class FeatureViews(Dataset):
    """Cached pooled features (N, views, D) of the training images; each item is one view drawn at random."""

    def __init__(self, features: torch.Tensor, labels):
        self.features, self.labels = features, torch.as_tensor(np.asarray(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int):
        view = int(torch.randint(self.features.shape[1], ()))
        return self.features[index, view], self.labels[index]


# What the pooled features depend on; the neck, head and loss do not change them.


def feature_key(cfg: Config, views: int, paths=()) -> str:
    """Names a cache of pooled features: data settings, backbone and pooling, seed, views (and images, when given)."""
    recipe = (f"{cfg.data.model_dump_json()}|{cfg.model.model_dump_json(include=_FEATURE_FIELDS['model'])}|"
              f"{cfg.train.seed}|{views}|{[str(p) for p in paths]}")
    return hashlib.sha1(recipe.encode()).hexdigest()[:16]


def cached_features(cfg: Config, run: Run, model: ReIDModel, images: ImageSet, views: int, device: torch.device,
                    name: str) -> torch.Tensor:
    """Pooled features (N, 1 + views, D) of ``images``: the plain image, then ``views`` augmented ones
    (seeded by the training seed). Kept per image in ``run.feature_cache`` (a stage's parent), so a
    resumed run does not recompute them and a refit on every photo embeds only the photos it adds."""
    store, key = run.feature_cache, f"{name}-{feature_key(cfg, views)}"
    known, stacked = store.cached_embeddings(f"{key}-paths"), store.cached_embeddings(key)
    row = {} if known is None or stacked is None else {str(path): i for i, path in enumerate(known)}
    missing = [i for i, path in enumerate(images.paths) if str(path) not in row]
    if missing:
        pooled = feature_extractor(cfg, run, model, device)
        subset = images.subset(missing)
        parts = []
        for view in range(1 + views):
            torch.manual_seed(cfg.train.seed * 7_919 + view)
            source = subset.with_transform(train_transform(cfg.data) if view else None)
            parts.append(embed_images(pooled, source, cfg.train.eval_batch_size, device, cfg.train.precision,
                                      channels_last=cfg.train.channels_last,
                                      progress=f"caching {name} features, view {view + 1}/{1 + views}"))
        added = np.stack(parts, axis=1)
        offset = len(row)  # rows past the known paths (a crash between the two saves) are dropped
        stacked = np.concatenate([stacked[:offset], added]) if offset else added
        row.update({str(images.paths[i]): offset + j for j, i in enumerate(missing)})
        store.save_embeddings(key, stacked)  # features first: a crash between the two leaves paths that miss rows, not rows that miss paths
        store.save_embeddings(f"{key}-paths", np.array(list(row), dtype=str))
    return torch.from_numpy(stacked[[row[str(path)] for path in images.paths]])


def feature_extractor(cfg: Config, run: Run, model: ReIDModel, device: torch.device) -> nn.Module:
    """The frozen model up to pooling; on the CPU (``train.feature_backend``) run by onnxruntime,
    which embeds lite0 about 5x faster than PyTorch eager there. Falls back to PyTorch when the
    exporter cannot take the architecture."""
    pooled = _Pooled(model).to(device)
    backend = cfg.train.feature_backend
    if backend == "torch" or (backend == "auto" and device.type != "cpu"):
        return pooled
    graph = f"{cfg.model.model_dump_json(include=_FEATURE_FIELDS['model'])}|{cfg.data.image_size}"
    path = run.path / "onnx" / f"features-{hashlib.sha1(graph.encode()).hexdigest()[:16]}.onnx"
    try:
        return OnnxModule(path, copy.deepcopy(pooled).cpu(), cfg.data.image_size)
    except Exception as error:
        warnings.warn(f"ONNX export of the frozen backbone failed ({type(error).__name__}: {error}); embedding with PyTorch")
        return pooled


@torch.no_grad()
def neck_embeddings(model: ReIDModel, features: torch.Tensor, device: torch.device) -> np.ndarray:
    """Embeddings of cached pooled features: the neck alone, in eval mode."""
    was_training = model.training
    model.eval()
    embeddings = model.neck(features.to(device)).float().cpu().numpy()
    model.train(was_training)
    return embeddings


def automatic_groups(cfg: Config, competition: Competition, run: Run, weights: str | None = None) -> AutoGroups | None:
    """Near-duplicate groups of the training photos (``split.auto_groups``) from the frozen
    backbone's features, when no group column is given; None otherwise."""
    if cfg.split.group_column or not cfg.split.auto_groups:
        return None
    files = competition.train["filename"].tolist()
    device = resolve_device(cfg.train.device)
    images = ImageSet(competition.train_paths(files), None, cfg.data.image_size, cfg.data.alpha, None, cache=False)
    key = f"groups-{feature_key(cfg, 0, images.paths)}"
    features = run.cached_embeddings(key)
    if features is None:
        with torch.random.fork_rng(devices=[]):  # a random-init backbone: groups depend on the split seed only
            torch.manual_seed(cfg.split.split_seed)
            model = create_reid_model(cfg.model, weights, cfg.data.image_size).eval()
        features = embed_images(feature_extractor(cfg, run, model, device), images, cfg.train.eval_batch_size, device,
                                cfg.train.precision, progress="grouping near-duplicate photos")
        run.save_embeddings(key, features)
    return near_duplicate_groups(features, competition.labels(files), cfg.split.auto_group_quantile)
