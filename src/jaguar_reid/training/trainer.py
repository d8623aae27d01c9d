"""The training loop: seeded, resumable, multi-seed, single process or DistributedDataParallel.

``train`` is the entry point. One seed is ``train_one``: ``setup`` (data, model, optimizer,
resume), then per epoch ``train_epoch`` (accumulation, DDP ``no_sync``), ``validate``,
``save_checkpoint`` and a log line. The run folder's layout belongs to ``Run``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..config import Config
from ..data.competition import Competition, load_competition
from ..data.dataset import EpochBatchSampler, ImageSet, train_transform
from ..data.groups import AutoGroups, near_duplicate_groups
from ..data.split import Split, make_split, read_metadata_column
from ..data.tables import DataError
from ..devices import autocast, resolve_device, tf32
from ..evaluation.metrics import METRIC_NAMES, OTHER_GROUPS, compute_metrics, cosine_similarity, scalar_metrics
from ..inference.embed import embed_images
from ..models.reid import ReIDModel, create_reid_model
from ..runs import Run
from .losses import ReIDCriterion
from .optim import build_optimizer, lr_factor, set_learning_rate
from .stages import train_stages, uses_stages



@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> Distributed:
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def _unwrap(module: nn.Module) -> nn.Module:
    module = getattr(module, "module", module)  # DistributedDataParallel
    return getattr(module, "_orig_mod", module)  # torch.compile


def _metadata_column(cfg: Config, setting: str, column: str, filenames) -> list[str]:
    """Values of a metadata column named by ``setting`` (e.g. split.group_column) for ``filenames``."""
    if not cfg.split.metadata_csv:
        raise DataError(f"{setting} is set but split.metadata_csv is not")
    return read_metadata_column(cfg.split.metadata_csv, column, filenames)


def build_split(cfg: Config, competition: Competition, auto_groups: AutoGroups | None = None) -> Split:
    """The validation split of ``cfg.split``: grouped by the metadata's group column, else by
    ``auto_groups`` (near-duplicates) when given, else image by image."""
    files, labels = competition.train["filename"].tolist(), competition.train["ground_truth"].tolist()
    groups, group_column = None, cfg.split.group_column
    if cfg.split.group_column:
        groups = _metadata_column(cfg, "split.group_column", cfg.split.group_column, files)
    elif auto_groups is not None:
        groups, group_column = auto_groups.groups, AUTO_GROUPS
    split = make_split(files, labels, cfg.split.val_fraction, cfg.split.split_seed, groups, group_column,
                       cfg.split.min_groups, cfg.split.unknown_fraction)
    if auto_groups is not None and not cfg.split.group_column:
        split.notes.insert(0, f"automatic groups: {len(files)} photos in {auto_groups.count} groups of near-duplicates "
                              f"(cosine similarity above {auto_groups.threshold:.4f}, the {cfg.split.auto_group_quantile} "
                              "quantile of different identities' pairs)")
    train_ids = set(competition.labels(split.train))
    if len(train_ids) < 2:
        raise DataError(f"{competition.root / 'train.csv'}: training needs at least two identities, found {len(train_ids)}")
    val_counts = np.unique(competition.labels(split.val), return_counts=True)[1]
    if not (val_counts >= 2).any():
        raise DataError(
            f"{competition.root / 'train.csv'}: no identity has two images in the validation split "
            f"(need identities with at least {math.ceil(2 / cfg.split.val_fraction)} images, or a larger split.val_fraction)"
        )
    return split


AUTO_GROUPS = "auto (near-duplicates)"


def automatic_groups(cfg: Config, competition: Competition, run: Run, weights: str | None = None) -> AutoGroups | None:
    """Near-duplicate groups of the training photos (``split.auto_groups``) from the frozen
    backbone's features, when no group column is given; None otherwise."""
    if cfg.split.group_column or not cfg.split.auto_groups:
        return None
    files = competition.train["filename"].tolist()
    device = resolve_device(cfg.train.device)
    images = ImageSet(competition.train_paths(files), None, cfg.data.image_size, cfg.data.alpha, None, cache=False)
    key = f"groups-{feature_key(cfg, images.paths, 0)}"
    features = run.cached_embeddings(key)
    if features is None:
        with torch.random.fork_rng(devices=[]):  # a random-init backbone: groups depend on the split seed only
            torch.manual_seed(cfg.split.split_seed)
            model = create_reid_model(cfg.model, weights, cfg.data.image_size).eval()
        features = embed_images(_feature_extractor(cfg, run, model, device), images, cfg.train.eval_batch_size, device,
                                cfg.train.precision, progress="grouping near-duplicate photos")
        run.save_embeddings(key, features)
    return near_duplicate_groups(features, competition.labels(files), cfg.split.auto_group_quantile)


class TrainStep(nn.Module):
    """Model and criterion as one module, so DDP synchronises the ArcFace centres too.

    ``head_only``: the inputs are cached pooled features, and only the neck runs.
    """

    def __init__(self, model: ReIDModel, criterion: ReIDCriterion, device: torch.device, precision: str,
                 head_only: bool = False):
        super().__init__()
        self.model, self.criterion = model, criterion
        self.device, self.precision, self.head_only = device, precision, head_only

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor):
        with autocast(self.device, self.precision):
            embeddings = self.model.neck(inputs) if self.head_only else self.model(inputs)
        return self.criterion(embeddings, labels)


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
_FEATURE_FIELDS = {"model": {"backbone", "pretrained", "weights", "pooling", "gem_p"}}


def feature_key(cfg: Config, paths, views: int) -> str:
    """Names a cache of pooled features: data settings, backbone and pooling, seed, views and images."""
    import hashlib

    recipe = (f"{cfg.data.model_dump_json()}|{cfg.model.model_dump_json(include=_FEATURE_FIELDS['model'])}|"
              f"{cfg.train.seed}|{views}|{[str(p) for p in paths]}")
    return hashlib.sha1(recipe.encode()).hexdigest()[:16]


def cached_features(cfg: Config, run: Run, model: ReIDModel, images: ImageSet, views: int, device: torch.device,
                    name: str) -> torch.Tensor:
    """Pooled features (N, 1 + views, D) of ``images``: the plain image, then ``views`` augmented ones
    (seeded by the training seed), cached in the run folder so a resumed run does not recompute them."""
    key = f"{name}-{feature_key(cfg, images.paths, views)}"
    stacked = run.cached_embeddings(key)
    if stacked is None:
        pooled = _feature_extractor(cfg, run, model, device)
        parts = []
        for view in range(1 + views):
            torch.manual_seed(cfg.train.seed * 7_919 + view)
            source = images.with_transform(train_transform(cfg.data) if view else None)
            parts.append(embed_images(pooled, source, cfg.train.eval_batch_size, device, cfg.train.precision,
                                      channels_last=cfg.train.channels_last,
                                      progress=f"caching {name} features, view {view + 1}/{1 + views}"))
        stacked = np.stack(parts, axis=1)
        run.save_embeddings(key, stacked)
    return torch.from_numpy(stacked)


def _feature_extractor(cfg: Config, run: Run, model: ReIDModel, device: torch.device) -> nn.Module:
    """The frozen model up to pooling; on the CPU (``train.feature_engine``) run by onnxruntime,
    which embeds lite0 about 5x faster than PyTorch eager there. Falls back to PyTorch when the
    exporter cannot take the architecture."""
    pooled = _Pooled(model).to(device)
    engine = cfg.train.feature_engine
    if engine == "torch" or (engine == "auto" and device.type != "cpu"):
        return pooled
    from ..inference.onnx import OnnxModule

    import hashlib

    graph = f"{cfg.model.model_dump_json(include=_FEATURE_FIELDS['model'])}|{cfg.data.image_size}"
    path = run.path / "onnx" / f"features-{hashlib.sha1(graph.encode()).hexdigest()[:16]}.onnx"
    try:
        return OnnxModule(path, copy.deepcopy(pooled).cpu(), cfg.data.image_size)
    except Exception as error:
        warnings.warn(f"ONNX export of the frozen backbone failed ({type(error).__name__}: {error}); embedding with PyTorch")
        return pooled


@dataclass
class Session:
    """Everything one seed's training holds between epochs."""

    cfg: Config
    run: Run
    device: torch.device
    distributed: Distributed
    model: ReIDModel
    criterion: ReIDCriterion
    optimizer: torch.optim.Optimizer
    step_module: nn.Module
    forward: nn.Module
    loader: DataLoader
    sampler: EpochBatchSampler
    val_set: ImageSet
    val_labels: np.ndarray
    val_groups: np.ndarray | None
    val_features: torch.Tensor | None  # head_only: the validation images' pooled features
    ema: ModelEmaV3 | None = None  # train.ema_decay: the averaged weights that are validated and saved
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"epoch": None, "value": -math.inf})
    start_epoch: int = 0
    steps: int = 0  # optimizer steps so far (the EMA's warmup counts them)

    @property
    def evaluated_model(self) -> ReIDModel:
        """The weights that are validated and saved: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else _unwrap(self.model)


def _training_classes(cfg: Config, competition: Competition, split: Split) -> tuple[list[str], list[int]]:
    """The head's classes (identities, or identity/value of ``train.class_column``) and each training image's class."""
    table = competition.train.set_index("filename")
    names = table.loc[split.train, "ground_truth"].tolist()
    if cfg.train.class_column:
        values = _metadata_column(cfg, "train.class_column", cfg.train.class_column, split.train)
        names = [f"{identity}/{value}" for identity, value in zip(names, values)]
    classes = sorted(set(names))
    index = {name: i for i, name in enumerate(classes)}
    return classes, [index[name] for name in names]


def setup(cfg: Config, competition: Competition, split: Split, run: Run, weights: str | None,
          distributed: Distributed, init_from: Run | None = None) -> Session:
    """Build data, model, loss and optimizer; restore the last finished epoch when there is one.

    ``init_from``: a finished run (a trained head, for LP-FT) whose best model and ArcFace centres
    this one starts from, instead of the pretrained backbone and imprinted centres.
    """
    device = resolve_device(cfg.train.device)
    if device.type == "cuda":
        device = torch.device("cuda", distributed.local_rank)
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.train.seed)
    classes, train_labels = _training_classes(cfg, competition, split)
    if distributed.is_main:
        run.write_classes(classes)

    state = run.load_state()
    restored = state is not None or init_from is not None
    model_cfg = cfg.model.model_copy(update={"pretrained": "none", "weights": None}) if restored else cfg.model
    model = create_reid_model(model_cfg, None if restored else weights, cfg.data.image_size)
    criterion = ReIDCriterion(cfg, len(classes), model.embedding_dim)
    if state:
        model.load_state_dict(state["model"])
        criterion.load_state_dict(state["criterion"])
    elif init_from is not None:
        model.load_state_dict(init_from.load_weights("best"))
        criterion.load_state_dict(init_from.load_weights("best_criterion"))
    head_only = cfg.train.head_only and cfg.train.epochs > 0  # with no epochs there is nothing to cache features for
    if head_only:
        model.freeze_backbone()
    if cfg.train.grad_checkpointing:
        model.backbone.set_grad_checkpointing(True)
    model.to(device)
    criterion.to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model, criterion, device)
    if state:
        optimizer.load_state_dict(state["optimizer"])

    step_module: nn.Module = TrainStep(model, criterion, device, cfg.train.precision, head_only)
    if distributed.world_size > 1:
        step_module = nn.parallel.DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda" else None)
    forward = torch.compile(step_module) if cfg.train.compile else step_module

    loader, sampler, val_set, val_features, plain = _data(cfg, competition, split, run, model, train_labels, head_only, device,
                                                           distributed)
    if not restored and cfg.model.head_init == "imprint" and cfg.train.epochs > 0:
        embeddings = plain()
        means = torch.zeros(len(classes), embeddings.shape[1]).index_add_(0, torch.as_tensor(train_labels), torch.from_numpy(embeddings))
        criterion.imprint(means.to(device))
    val_labels = competition.labels(split.val)
    val_groups = np.asarray(split.groups_of(split.val)) if split.groups else None
    ema = ModelEmaV3(model, decay=cfg.train.ema_decay, use_warmup=True) if cfg.train.ema_decay > 0 else None
    session = Session(cfg, run, device, distributed, model, criterion, optimizer, step_module, forward, loader, sampler,
                      val_set, val_labels, val_groups, val_features, ema)
    if state:
        session.history, session.best, session.start_epoch = state["history"], state["best"], state["epoch"]
        session.steps = state.get("steps", 0)
        if ema is not None:
            ema.load_state_dict(state["ema"])
    return session


def _data(cfg: Config, competition: Competition, split: Split, run: Run, model: ReIDModel, train_labels, head_only: bool,
          device: torch.device, distributed: Distributed):
    """Training batches (images, or cached feature views when ``head_only``), the validation set
    (and its cached features), and a function giving the plain training embeddings (for imprinting)."""
    data = cfg.data
    train_set = ImageSet(competition.train_paths(split.train), train_labels, data.image_size, data.alpha, train_transform(data), data.cache_images)
    val_set = ImageSet(competition.train_paths(split.val), None, data.image_size, data.alpha, None, data.cache_images)
    if head_only:  # the backbone is fixed: embed once, then train on the features
        train_features = cached_features(cfg, run, model, train_set, cfg.train.feature_views, device, "train")
        val_features = cached_features(cfg, run, model, val_set, 0, device, "val")[:, 0]
        items: Dataset = FeatureViews(train_features, train_labels)

        def plain() -> np.ndarray:
            return _neck_embeddings(model, train_features[:, 0], device)
    else:
        val_features, items = None, train_set

        def plain() -> np.ndarray:
            return embed_images(model, train_set.with_transform(None), cfg.train.eval_batch_size, device, cfg.train.precision,
                                channels_last=cfg.train.channels_last, progress="imprinting class centres")
    groups = split.groups_of(split.train)
    sampler = EpochBatchSampler(train_labels, cfg.train.batch_size, cfg.train.sampler, cfg.train.images_per_identity,
                                cfg.train.seed, distributed.rank, distributed.world_size, groups)
    workers = 0 if head_only else data.num_workers
    loader = DataLoader(items, batch_sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0)
    return loader, sampler, val_set, val_features, plain


@torch.no_grad()
def _neck_embeddings(model: ReIDModel, features: torch.Tensor, device: torch.device) -> np.ndarray:
    """Embeddings of cached pooled features: the neck alone, in eval mode."""
    was_training = model.training
    model.eval()
    embeddings = model.neck(features.to(device)).float().cpu().numpy()
    model.train(was_training)
    return embeddings


def train_epoch(session: Session, epoch: int) -> dict:
    """One pass over the training batches (gradient accumulation, DDP sync on the last micro-batch only).

    Returns the epoch's record: mean loss and each of its parts, learning rate, seconds, img/s.
    """
    cfg, device, distributed = session.cfg, session.device, session.distributed
    start = time.time()
    torch.manual_seed(cfg.train.seed * 100_003 + epoch)  # augmentations depend on (seed, epoch) only
    session.sampler.set_epoch(epoch)
    set_learning_rate(session.optimizer, lr_factor(epoch, cfg))
    session.step_module.train()
    accumulation, n_batches = cfg.train.grad_accumulation, len(session.loader)
    sums: dict[str, torch.Tensor] = {}
    n_steps = n_images = 0
    progress = tqdm(session.loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", unit="batch", leave=False,
                    **({} if distributed.is_main else {"disable": True}))
    session.optimizer.zero_grad(set_to_none=True)
    for step, (images, labels) in enumerate(progress):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if cfg.train.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        last_micro = (step + 1) % accumulation == 0 or step + 1 == n_batches
        no_sync = distributed.world_size > 1 and not last_micro
        with session.step_module.no_sync() if no_sync else contextlib.nullcontext():
            loss, parts = session.forward(images, labels)
            (loss / accumulation).backward()
        if last_micro:
            session.optimizer.step()
            session.optimizer.zero_grad(set_to_none=True)
            session.steps += 1
            if session.ema is not None:
                session.ema.update(_unwrap(session.model), step=session.steps)
        for name, value in {"loss": loss.detach(), **{f"loss_{k}": v for k, v in parts.items()}}.items():
            sums[name] = sums.get(name, 0) + value
        n_steps += 1
        n_images += len(images) * distributed.world_size
        if step % 10 == 0:  # reading the loss syncs the GPU: not every step
            progress.set_postfix(loss=f"{float(sums['loss']) / n_steps:.3f}")
    means = torch.stack(list(sums.values())) / max(n_steps, 1)
    if distributed.world_size > 1:  # the logged losses are means over all ranks' shards
        dist.all_reduce(means)
        means /= distributed.world_size
    seconds = time.time() - start
    return {"epoch": epoch + 1, **{name: float(v) for name, v in zip(sums, means)},
            "lr": session.optimizer.param_groups[0]["lr"], "seconds": round(seconds, 3),
            "images_per_second": round(n_images / max(seconds, 1e-9), 3)}


def validate(session: Session) -> dict:
    """Every leaderboard metric over all ordered pairs of the validation images (raw cosine
    similarity); with groups, also over pairs from different groups only (``<metric>_other_groups``)."""
    cfg, model = session.cfg, session.evaluated_model
    if session.val_features is not None:
        embeddings = _neck_embeddings(model, session.val_features, session.device)
    else:
        embeddings = embed_images(model, session.val_set, cfg.train.eval_batch_size, session.device,
                                  cfg.train.precision, channels_last=cfg.train.channels_last, progress=None)
    similarity = cosine_similarity(embeddings)
    metrics = scalar_metrics(similarity, session.val_labels)
    if session.val_groups is not None:
        same_group = session.val_groups[:, None] == session.val_groups[None, :]
        other = compute_metrics(np.where(same_group, np.nan, similarity), session.val_labels)
        metrics.update({f"{k}{OTHER_GROUPS}": other[k] for k in METRIC_NAMES})
    return metrics


def selection_key(cfg: Config, split: Split, first_record: dict | None = None) -> str:
    """The record key that picks the kept epoch: the selection metric, on other groups' pairs when
    groups are known and the validation split has such pairs (``first_record``, epoch 0, tells)."""
    key = cfg.train.selection_metric + (OTHER_GROUPS if split.groups and cfg.train.select_on_other_groups else "")
    if first_record is not None and math.isnan(first_record.get(key, math.nan)):
        return cfg.train.selection_metric  # e.g. every validation identity in one group: no pair from other groups
    return key


def save_checkpoint(session: Session, epoch: int, improved: bool) -> None:
    """Best and last weights (the EMA's when there is one; the best with its ArcFace centres, the
    start of a fine-tuning stage), the resumable state and metrics.jsonl (rank 0 only)."""
    run, model = session.run, session.evaluated_model
    meta = {"epoch": str(epoch), "backbone": session.cfg.model.backbone}
    if improved:
        _save_best(session, meta)
    run.save_weights(model.state_dict(), "last", meta)
    state = {"model": _unwrap(session.model).state_dict(), "criterion": session.criterion.state_dict(),
             "optimizer": session.optimizer.state_dict(), "epoch": epoch, "history": session.history,
             "best": session.best, "steps": session.steps}
    if session.ema is not None:
        state["ema"] = session.ema.state_dict()
    run.save_state(state)
    run.write_history(session.history)


def _save_best(session: Session, meta: dict[str, str]) -> None:
    session.run.save_weights(session.evaluated_model.state_dict(), "best", meta)
    session.run.save_weights(session.criterion.state_dict(), "best_criterion", meta)


def _epoch_line(record: dict, selection: str) -> str:
    parts = [f"{k.removeprefix('loss_')} {v:.4f}" for k, v in record.items() if k.startswith("loss_")]
    shown = dict.fromkeys([selection, "identity_balanced_map"])
    metrics = "  ".join(f"{key} {record[key]:.4f}" for key in shown)
    return (f"epoch {record['epoch']}: loss {record['loss']:.4f}{f' ({chr(44).join(parts)})' if len(parts) > 1 else ''}  "
            f"{metrics}  ({record['seconds']:.0f} s, {record['images_per_second']:.1f} img/s)")


def train_one(cfg: Config, competition: Competition, split: Split, run: Run, weights: str | None = None,
              distributed: Distributed | None = None, init_from: Run | None = None,
              start_metrics: dict | None = None) -> dict:
    """Train one seed into ``run`` (resuming from its last finished epoch if there is one); returns its summary.

    Epoch 0, the first candidate, is the starting model: the pretrained backbone, or the model of
    ``init_from`` (whose validation metrics ``start_metrics`` are, so they are not computed again).
    """
    distributed = distributed or Distributed()
    session = setup(cfg, competition, split, run, weights, distributed, init_from)
    with tf32(session.device, cfg.train.tf32):
        fresh = not session.history
        if fresh:
            metrics = start_metrics if start_metrics is not None else validate(session)
            session.history.append({"epoch": 0, "loss": None, "lr": None, "seconds": 0.0, **metrics})
        selection = selection_key(cfg, split, session.history[0])
        if fresh:
            session.best = {"epoch": 0, "value": session.history[0][selection]}
            if distributed.is_main:
                _save_best(session, {"epoch": "0", "backbone": cfg.model.backbone})
        for epoch in range(session.start_epoch, cfg.train.epochs):
            record = train_epoch(session, epoch)
            record.update(validate(session))
            session.history.append(record)
            improved = record[selection] > session.best["value"]
            if improved:
                session.best = {"epoch": epoch + 1, "value": record[selection]}
            if distributed.is_main:
                save_checkpoint(session, epoch + 1, improved)
                tqdm.write(_epoch_line(record, selection))
            if distributed.world_size > 1:
                dist.barrier()
    if distributed.is_main:
        if not (run.path / "last.safetensors").exists():  # epochs = 0: the untrained model is the result
            run.save_weights(session.evaluated_model.state_dict(), "last", {"epoch": "0", "backbone": cfg.model.backbone})
        run.write_history(session.history)
    summary = _summary(cfg, session.history, session.best, selection, split, len(set(competition.labels(split.train))))
    if distributed.is_main:
        run.write_summary(summary)
    return summary


def _summary(cfg: Config, history: list[dict], best: dict, selection: str, split: Split, n_identities: int) -> dict:
    by_epoch = {row["epoch"]: row for row in history}
    best_row = by_epoch.get(best["epoch"], history[-1])
    trained = [row for row in history if row["epoch"] > 0]
    keys = [k for k in history[0] if k.removesuffix(OTHER_GROUPS) in METRIC_NAMES]
    return {
        "seed": cfg.train.seed,
        "selection_metric": selection,
        "best_epoch": best["epoch"] or 0,
        "best": {k: best_row[k] for k in keys},
        "last": {k: history[-1][k] for k in keys},
        "untrained": {k: history[0][k] for k in keys},
        "epochs": cfg.train.epochs,
        "train_seconds": round(sum(row["seconds"] for row in trained), 3),
        "images_per_second": round(float(np.mean([row["images_per_second"] for row in trained])), 3) if trained else None,
        "n_train_images": len(split.train),
        "n_val_images": len(split.val),
        "n_identities": n_identities,
    }


def _train_seed(cfg: Config, competition: Competition, split: Split, run: Run, weights: str | None,
                distributed: Distributed) -> dict:
    """One seed: a single stage, or the head then maybe a fine-tune (``finetune.mode``); writes its summary."""
    if not uses_stages(cfg):
        return train_one(cfg, competition, split, run, weights, distributed)
    summary = train_stages(cfg, competition, split, run, weights, distributed, train_one)
    if distributed.is_main:
        run.write_summary(summary)
    return summary


def _with_seed(cfg: Config, seed: int) -> Config:
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})


def train(cfg: Config, data_root: str | Path, out: str | Path, seeds: list[int] | None = None,
          train_images: str | Path | None = None, weights: str | None = None,
          overwrite: bool = False, resume: bool = False) -> dict:
    """Train one run per seed (same split) into the run folder ``out``; returns the summary
    (with mean/std over seeds if several). Rerunning the same call resumes."""
    distributed = Distributed.from_environment()
    if distributed.world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.train.device != "cpu" else "gloo")
    run = Run(out)
    seeds = seeds or [cfg.train.seed]
    if len(seeds) == 1:
        cfg = _with_seed(cfg, seeds[0])
    resolve_device(cfg.train.device)  # a bad device stops here, before the run folder is touched
    competition = load_competition(data_root, train_images)
    split = build_split(cfg, competition, automatic_groups(cfg, competition, run, weights))
    if distributed.is_main:  # one rank decides about the folder; the others wait for it
        run.claim(cfg, overwrite, resume)
        run.write_split(split)
        run.write_data_source(data_root, competition.train_dir)
    if distributed.world_size > 1:
        dist.barrier()
    if len(seeds) == 1:
        return _train_seed(cfg, competition, split, run, weights, distributed)

    summaries = {}
    for seed in seeds:
        seed_cfg, member = _with_seed(cfg, seed), Run(run.path / f"seed_{seed}")
        if distributed.is_main:
            member.claim(seed_cfg, overwrite=False, resume=resume)
            member.write_split(split)
        if distributed.world_size > 1:
            dist.barrier()
        summaries[seed] = _train_seed(seed_cfg, competition, split, member, weights, distributed)
    summary = {
        "seeds": seeds,
        "runs": {str(s): summaries[s] for s in seeds},
        "mean": {k: float(np.mean([summaries[s]["best"][k] for s in seeds])) for k in summaries[seeds[0]]["best"]},
        "std": {k: float(np.std([summaries[s]["best"][k] for s in seeds])) for k in summaries[seeds[0]]["best"]},
    }
    if distributed.is_main:
        run.write_summary(summary)
    return summary
