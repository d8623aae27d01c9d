"""The training loop: seeded, resumable, multi-seed, single process or DistributedDataParallel.

A run folder holds config.toml (resolved), split.json, labels.json, metrics.jsonl, best and last
checkpoints and summary.json. Several seeds write one sub-run each (``seed_<n>/``) over the same
split plus a summary with the mean and standard deviation of each metric.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import Config, build_config
from ..data.competition import Competition, load_competition
from ..data.dataset import EpochBatchSampler, ImageSet, train_transform
from ..data.split import SPLIT_FILE, Split, make_split, read_metadata_column
from ..data.tables import DataError
from ..evaluation.metrics import METRIC_NAMES, compute_metrics, cosine_similarity
from ..inference.embed import autocast, embed_images, resolve_device
from ..models.reid import ReIDModel, create_reid_model
from .losses import ReIDCriterion

CONFIG_FILE, LABELS_FILE, METRICS_FILE, SUMMARY_FILE = "config.toml", "labels.json", "metrics.jsonl", "summary.json"
DATA_FILE = "data.json"
BEST_WEIGHTS, LAST_WEIGHTS, LAST_STATE = "best.safetensors", "last.safetensors", "last_state.pt"


class RunFolderError(RuntimeError):
    """The output folder holds a different run."""


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


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _save_weights(model: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
    save_file(state, str(tmp), metadata=metadata)
    tmp.replace(path)


def _unwrap(module: nn.Module) -> nn.Module:
    module = getattr(module, "module", module)  # DistributedDataParallel
    return getattr(module, "_orig_mod", module)  # torch.compile


def lr_factor(epoch: int, cfg: Config) -> float:
    """Learning-rate multiplier for an epoch (0-based): linear warmup, then cosine (T_max = epochs) or constant."""
    warmup = cfg.schedule.warmup_epochs
    if epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    if cfg.schedule.name == "constant":
        return 1.0
    span = max(1, cfg.train.epochs - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / span))


def _metadata_column(cfg: Config, setting: str, column: str, filenames) -> list[str]:
    """Values of a metadata column named by ``setting`` (e.g. split.group_column) for ``filenames``."""
    if not cfg.split.metadata_csv:
        raise DataError(f"{setting} is set but split.metadata_csv is not")
    return read_metadata_column(cfg.split.metadata_csv, column, filenames)


def build_split(cfg: Config, competition: Competition) -> Split:
    files, labels = competition.train["filename"].tolist(), competition.train["ground_truth"].tolist()
    groups = None
    if cfg.split.group_column:
        groups = _metadata_column(cfg, "split.group_column", cfg.split.group_column, files)
    split = make_split(files, labels, cfg.split.val_fraction, cfg.split.split_seed, groups, cfg.split.group_column)
    train_ids = set(competition.train.set_index("filename").loc[split.train, "ground_truth"])
    if len(train_ids) < 2:
        raise DataError(f"{competition.root / 'train.csv'}: training needs at least two identities, found {len(train_ids)}")
    val_counts = competition.train.set_index("filename").loc[split.val, "ground_truth"].value_counts()
    if not (val_counts >= 2).any():
        raise DataError(
            f"{competition.root / 'train.csv'}: no identity has two images in the validation split "
            f"(need identities with at least {math.ceil(2 / cfg.split.val_fraction)} images, or a larger split.val_fraction)"
        )
    return split


def _prepare_run_folder(out: Path, cfg: Config, overwrite: bool, resume: bool) -> None:
    """Claim ``out`` for this config: refuse a different run unless told to resume or overwrite."""
    config_path = out / CONFIG_FILE
    if config_path.exists():
        if overwrite:
            shutil.rmtree(out)
        elif read_run_config(out) != cfg and not resume:
            raise RunFolderError(
                f"{out}: holds a run with a different config; pass --resume to continue it with this config, "
                "--overwrite to start again, or choose another --out"
            )
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise RunFolderError(f"{out}: exists and is not a jaguar-reid run folder; choose another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(config_path, cfg.to_toml())


def read_run_config(run: str | Path) -> Config:
    """The resolved config a run folder was trained with."""
    path = Path(run) / CONFIG_FILE
    return build_config(tomllib.loads(path.read_text()), str(path))


class TrainStep(nn.Module):
    """Model and criterion as one module, so DDP synchronises the ArcFace centres too."""

    def __init__(self, model: ReIDModel, criterion: ReIDCriterion, device: torch.device, precision: str):
        super().__init__()
        self.model, self.criterion = model, criterion
        self.device, self.precision = device, precision

    def forward(self, images: torch.Tensor, labels: torch.Tensor):
        with autocast(self.device, self.precision):
            embeddings = self.model(images)
        return self.criterion(embeddings, labels)


def build_optimizer(cfg: Config, model: ReIDModel, criterion: ReIDCriterion, device: torch.device) -> torch.optim.Optimizer:
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    head = [p for p in list(model.pool.parameters()) + list(model.neck.parameters()) + list(criterion.parameters())]
    groups = [
        {"params": backbone, "lr": cfg.optimizer.lr},
        {"params": head, "lr": cfg.optimizer.lr * cfg.optimizer.head_lr_multiplier},
    ]
    for group in groups:
        group["initial_lr"] = group["lr"]
    if cfg.optimizer.name == "sgd":
        return torch.optim.SGD(groups, momentum=0.9, weight_decay=cfg.optimizer.weight_decay, nesterov=True)
    fused = cfg.optimizer.fused if cfg.optimizer.fused is not None else device.type == "cuda"
    return torch.optim.AdamW(groups, weight_decay=cfg.optimizer.weight_decay, fused=fused)


def validate(model: nn.Module, val_set: ImageSet, labels, cfg: Config, device: torch.device) -> dict:
    embeddings = embed_images(_unwrap(model), val_set, cfg.train.eval_batch_size, device, cfg.train.precision,
                              channels_last=cfg.train.channels_last, progress=None)
    metrics = compute_metrics(cosine_similarity(embeddings), labels)
    metrics.pop("per_identity_ap")
    return metrics


def train_one(cfg: Config, competition: Competition, split: Split, out: Path, weights: str | None = None,
              distributed: Distributed | None = None) -> dict:
    """Train one seed into ``out`` (resuming from its last checkpoint if present); returns its summary."""
    distributed = distributed or Distributed()
    device = resolve_device(cfg.train.device)
    if device.type == "cuda":
        device = torch.device("cuda", distributed.local_rank)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = cfg.train.tf32
        torch.backends.cudnn.allow_tf32 = cfg.train.tf32
    seed = cfg.train.seed
    torch.manual_seed(seed)

    table = competition.train.set_index("filename")
    train_classes = table.loc[split.train, "ground_truth"].tolist()
    if cfg.train.class_column:
        values = _metadata_column(cfg, "train.class_column", cfg.train.class_column, split.train)
        train_classes = [f"{identity}/{value}" for identity, value in zip(train_classes, values)]
    classes = sorted(set(train_classes))
    class_index = {name: i for i, name in enumerate(classes)}
    train_labels = [class_index[x] for x in train_classes]
    val_labels = table.loc[split.val, "ground_truth"].to_numpy()
    if distributed.is_main:
        _atomic_write_text(out / LABELS_FILE, json.dumps(classes, indent=1))

    state_path = out / LAST_STATE
    resuming = state_path.exists()
    model_cfg = cfg.model.model_copy(update={"pretrained": "none"}) if resuming else cfg.model
    model = create_reid_model(model_cfg, None if resuming else weights, cfg.data.image_size)
    criterion = ReIDCriterion(cfg, len(classes), model.embedding_dim)
    state = torch.load(state_path, map_location="cpu", weights_only=False) if resuming else None
    if state is not None:
        model.load_state_dict(state["model"])
        criterion.load_state_dict(state["criterion"])
    if cfg.train.grad_checkpointing:
        model.backbone.set_grad_checkpointing(True)
    model.to(device)
    criterion.to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model, criterion, device)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])

    step_module: nn.Module = TrainStep(model, criterion, device, cfg.train.precision)
    if distributed.world_size > 1:
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None
        )
    forward = torch.compile(step_module) if cfg.train.compile else step_module

    paths = competition.train_paths(split.train)
    train_set = ImageSet(paths, train_labels, cfg.data.image_size, cfg.data.alpha, train_transform(cfg.data), cfg.data.cache_images)
    val_set = ImageSet(competition.train_paths(split.val), None, cfg.data.image_size, cfg.data.alpha, None, cfg.data.cache_images)
    sampler = EpochBatchSampler(train_labels, cfg.train.batch_size, cfg.train.sampler, cfg.train.images_per_identity,
                                seed, distributed.rank, distributed.world_size)
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.data.num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=cfg.data.num_workers > 0)

    if state is None and cfg.model.head_init == "imprint" and cfg.train.epochs > 0:
        embeddings = torch.from_numpy(embed_images(model, train_set.with_transform(None), cfg.train.eval_batch_size, device, cfg.train.precision,
                                                   channels_last=cfg.train.channels_last, progress="imprinting class centres"))
        labels_tensor = torch.as_tensor(train_labels)
        means = torch.zeros(len(classes), embeddings.shape[1]).index_add_(0, labels_tensor, embeddings)
        criterion.imprint(means.to(device))

    history = state["history"] if state else []
    start_epoch = state["epoch"] if state else 0
    best = state["best"] if state else {"epoch": None, "value": -math.inf}
    if not history:  # epoch 0: the untrained (frozen pretrained) features, for reference
        metrics = validate(model, val_set, val_labels, cfg, device)
        history.append({"epoch": 0, "loss": None, "lr": None, "seconds": 0.0, **metrics})
    accumulation = cfg.train.grad_accumulation
    for epoch in range(start_epoch, cfg.train.epochs):
        epoch_start = time.time()
        torch.manual_seed(seed * 100_003 + epoch)  # augmentations depend on (seed, epoch) only
        sampler.set_epoch(epoch)
        factor = lr_factor(epoch, cfg)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        step_module.train()
        loss_sum, n_steps, n_images = torch.zeros((), device=device), 0, 0
        progress = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", unit="batch",
                        disable=not distributed.is_main, leave=False)
        optimizer.zero_grad(set_to_none=True)
        for step, (images, labels) in enumerate(progress):
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            if cfg.train.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            last_micro = (step + 1) % accumulation == 0 or step + 1 == len(loader)
            sync = step_module.no_sync() if (distributed.world_size > 1 and not last_micro) else contextlib.nullcontext()
            with sync:
                loss, _ = forward(images, labels)
                (loss / accumulation).backward()
            if last_micro:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
            n_steps += 1
            n_images += len(images) * distributed.world_size
            if step % 10 == 0:  # reading the loss syncs the GPU: not every step
                progress.set_postfix(loss=f"{float(loss_sum) / n_steps:.3f}")
        if distributed.world_size > 1:  # the logged loss is the mean over all ranks' shards
            dist.all_reduce(loss_sum)
            loss_sum /= distributed.world_size
        seconds = time.time() - epoch_start
        metrics = validate(model, val_set, val_labels, cfg, device)
        record = {"epoch": epoch + 1, "loss": float(loss_sum) / max(n_steps, 1), "lr": optimizer.param_groups[0]["lr"],
                  "seconds": round(seconds, 3), "images_per_second": round(n_images / max(seconds, 1e-9), 3), **metrics}
        history.append(record)
        value = metrics[cfg.train.selection_metric]
        improved = value > best["value"]
        if improved:
            best = {"epoch": epoch + 1, "value": value}
        if distributed.is_main:
            meta = {"epoch": str(epoch + 1), "backbone": cfg.model.backbone}
            if improved:
                _save_weights(model, out / BEST_WEIGHTS, meta)
            _save_weights(model, out / LAST_WEIGHTS, meta)
            tmp = state_path.with_name(state_path.name + ".tmp")
            torch.save({"model": _unwrap(model).state_dict(), "criterion": criterion.state_dict(),
                        "optimizer": optimizer.state_dict(), "epoch": epoch + 1, "history": history, "best": best}, tmp)
            tmp.replace(state_path)
            _write_metrics(out, history)
            tqdm.write(_epoch_line(record, cfg.train.selection_metric))
        if distributed.world_size > 1:
            dist.barrier()

    if distributed.is_main:
        if not (out / BEST_WEIGHTS).exists():  # epochs = 0: the untrained model is the result
            for name in (BEST_WEIGHTS, LAST_WEIGHTS):
                _save_weights(model, out / name, {"epoch": "0", "backbone": cfg.model.backbone})
        _write_metrics(out, history)
    summary = _summary(cfg, history, best, split, len(set(table.loc[split.train, "ground_truth"])))
    if distributed.is_main:
        _atomic_write_text(out / SUMMARY_FILE, json.dumps(summary, indent=1))
    return summary


def _epoch_line(record: dict, selection: str) -> str:
    return (f"epoch {record['epoch']}: loss {record['loss']:.4f}  {selection} {record[selection]:.4f}  "
            f"identity_balanced_map {record['identity_balanced_map']:.4f}  ({record['seconds']:.0f} s, "
            f"{record['images_per_second']:.1f} img/s)")


def _write_metrics(out: Path, history: list[dict]) -> None:
    _atomic_write_text(out / METRICS_FILE, "".join(json.dumps(row) + "\n" for row in history))


def _summary(cfg: Config, history: list[dict], best: dict, split: Split, n_identities: int) -> dict:
    by_epoch = {row["epoch"]: row for row in history}
    best_row = by_epoch.get(best["epoch"], history[-1])
    trained = [row for row in history if row["epoch"] > 0]
    return {
        "seed": cfg.train.seed,
        "selection_metric": cfg.train.selection_metric,
        "best_epoch": best["epoch"] or 0,
        "best": {k: best_row[k] for k in METRIC_NAMES},
        "last": {k: history[-1][k] for k in METRIC_NAMES},
        "untrained": {k: history[0][k] for k in METRIC_NAMES},
        "epochs": cfg.train.epochs,
        "train_seconds": round(sum(row["seconds"] for row in trained), 3),
        "images_per_second": round(float(np.mean([row["images_per_second"] for row in trained])), 3) if trained else None,
        "n_train_images": len(split.train),
        "n_val_images": len(split.val),
        "n_identities": n_identities,
    }


def train(cfg: Config, data_root: str | Path, out: str | Path, seeds: list[int] | None = None,
          train_images: str | Path | None = None, weights: str | None = None,
          overwrite: bool = False, resume: bool = False) -> dict:
    """Train one run per seed (same split); returns the summary (with mean/std over seeds if several)."""
    distributed = Distributed.from_environment()
    if distributed.world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.train.device != "cpu" else "gloo")
    out = Path(out)
    seeds = seeds or [cfg.train.seed]
    if len(seeds) == 1:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seeds[0]})})
    if distributed.is_main:  # one rank decides about the folder; the others wait for it
        _prepare_run_folder(out, cfg, overwrite, resume)
    if distributed.world_size > 1:
        dist.barrier()
    competition = load_competition(data_root, train_images)
    split = build_split(cfg, competition)
    if distributed.is_main:
        split.save(out / SPLIT_FILE)
        source = {"data_root": str(Path(data_root).resolve()), "train_images": str(competition.train_dir.resolve())}
        _atomic_write_text(out / DATA_FILE, json.dumps(source, indent=1))
    if len(seeds) == 1:
        return train_one(cfg, competition, split, out, weights, distributed)

    summaries = {}
    for seed in seeds:
        seed_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})
        sub = out / f"seed_{seed}"
        if distributed.is_main:
            _prepare_run_folder(sub, seed_cfg, overwrite=False, resume=resume)
            split.save(sub / SPLIT_FILE)
        if distributed.world_size > 1:
            dist.barrier()
        summaries[seed] = train_one(seed_cfg, competition, split, sub, weights, distributed)
    summary = {
        "seeds": seeds,
        "runs": {str(s): summaries[s] for s in seeds},
        "mean": {k: float(np.mean([summaries[s]["best"][k] for s in seeds])) for k in METRIC_NAMES},
        "std": {k: float(np.std([summaries[s]["best"][k] for s in seeds])) for k in METRIC_NAMES},
    }
    if distributed.is_main:
        _atomic_write_text(out / SUMMARY_FILE, json.dumps(summary, indent=1))
    return summary


def load_run_model(run: str | Path, checkpoint: str = "best") -> tuple[ReIDModel, Config]:
    """The model of a single-seed run folder with its best (or last) weights, and its config."""
    run = Path(run)
    cfg = read_run_config(run)
    model = create_reid_model(cfg.model.model_copy(update={"pretrained": "none", "weights": None}), image_size=cfg.data.image_size)
    model.load_state_dict(load_file(str(run / (BEST_WEIGHTS if checkpoint == "best" else LAST_WEIGHTS))))
    return model.eval(), cfg


def run_members(run: str | Path) -> list[Path]:
    """The single-seed runs inside a run folder: itself, or its ``seed_*`` sub-runs."""
    run = Path(run)
    if (run / BEST_WEIGHTS).exists():
        return [run]
    members = sorted(p for p in run.glob("seed_*") if (p / BEST_WEIGHTS).exists())
    if not members:
        raise RunFolderError(f"{run}: no trained model here (expected {BEST_WEIGHTS} or seed_*/{BEST_WEIGHTS})")
    return members
