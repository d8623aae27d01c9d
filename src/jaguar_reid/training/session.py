"""One seed's training set-up: the process group's place (``Distributed``), the model and loss as
one module (``TrainStep``), and ``setup``, which builds data, model, loss and optimizer and
restores the last finished epoch (``checkpoint.restore``)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..config import Config
from ..data.competition import Competition
from ..data.dataset import EpochBatchSampler, ImageSet, train_transform
from ..data.split import Split, metadata_column
from ..devices import autocast, resolve_device
from ..inference.embed import embed_images
from ..models.reid import ReIDModel, create_reid_model
from ..runs import Run
from .checkpoint import load_weights, restore, unwrap
from .features import FeatureViews, cached_features, neck_embeddings
from .losses import ReIDCriterion
from .optim import build_optimizer


@dataclass
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0, which writes the run folder."""
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> Distributed:
        """From torchrun's RANK, WORLD_SIZE and LOCAL_RANK."""
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


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
        """Loss and its parts for a batch of images (or cached features) and labels."""
        with autocast(self.device, self.precision):
            embeddings = self.model.neck(inputs) if self.head_only else self.model(inputs)
        return self.criterion(embeddings, labels)


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
        return self.ema.module if self.ema is not None else unwrap(self.model)


def _training_classes(cfg: Config, competition: Competition, split: Split) -> tuple[list[str], list[int]]:
    """The head's classes (identities, or identity/value of ``train.class_column``) and each training image's class."""
    table = competition.train.set_index("filename")
    names = table.loc[split.train, "ground_truth"].tolist()
    if cfg.train.class_column:
        values = metadata_column(cfg, "train.class_column", cfg.train.class_column, split.train)
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
    device = _device(cfg, distributed)
    torch.manual_seed(cfg.train.seed)
    classes, train_labels = _training_classes(cfg, competition, split)
    if distributed.is_main:
        run.write_classes(classes)
    state = run.load_state()
    fresh = state is None and init_from is None
    model_cfg = cfg.model if fresh else cfg.model.model_copy(update={"pretrained": "none", "weights": None})
    model = create_reid_model(model_cfg, weights if fresh else None, cfg.data.image_size)
    criterion = ReIDCriterion(cfg, len(classes), model.embedding_dim)
    load_weights(model, criterion, state, init_from)  # before the feature cache: it embeds with this backbone
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
    step_module: nn.Module = TrainStep(model, criterion, device, cfg.train.precision, head_only)
    if distributed.world_size > 1:
        step_module = nn.parallel.DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda" else None)
    forward = torch.compile(step_module) if cfg.train.compile else step_module
    loader, sampler, val_set, val_features, plain = _data(cfg, competition, split, run, model, train_labels, head_only, device,
                                                           distributed)
    if fresh and cfg.model.head_init == "imprint" and cfg.train.epochs > 0:
        embeddings = plain()
        means = torch.zeros(len(classes), embeddings.shape[1]).index_add_(0, torch.as_tensor(train_labels), torch.from_numpy(embeddings))
        criterion.imprint(means.to(device))
    val_groups = np.asarray(split.groups_of(split.val)) if split.groups else None
    ema = ModelEmaV3(model, decay=cfg.train.ema_decay, use_warmup=True) if cfg.train.ema_decay > 0 else None
    session = Session(cfg, run, device, distributed, model, criterion, optimizer, step_module, forward, loader, sampler,
                      val_set, competition.labels(split.val), val_groups, val_features, ema)
    restore(session, state)
    return session


def _device(cfg: Config, distributed: Distributed) -> torch.device:
    """The configured device; on CUDA, this rank's GPU."""
    device = resolve_device(cfg.train.device)
    if device.type == "cuda":
        device = torch.device("cuda", distributed.local_rank)
        torch.cuda.set_device(device)
    return device


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
            return neck_embeddings(model, train_features[:, 0], device)
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
