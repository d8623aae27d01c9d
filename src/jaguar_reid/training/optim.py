"""Optimizer and learning-rate schedule: parameter groups as data (timm's weight-decay rules)."""

from __future__ import annotations

import math

import torch
from timm.optim import param_groups_weight_decay
from torch import nn

from ..config import Config

# The head's class centres: L2-normalised inside ArcFace, so decay only shrinks a norm that is never used.
_HEAD_NO_DECAY = ("criterion.arcface.W",)


def parameter_groups(cfg: Config, model: nn.Module, criterion: nn.Module) -> list[dict]:
    """Backbone at ``optimizer.lr``, head (pooling, neck, loss) at ``lr x head_lr_multiplier``;
    no weight decay on 1-D parameters (norms, GeM's p), biases or the ArcFace centres."""
    head = nn.ModuleDict({"pool": model.pool, "neck": model.neck, "criterion": criterion})
    groups = []
    for module, lr, excluded in ((model.backbone, cfg.optimizer.lr, ()),
                                 (head, cfg.optimizer.lr * cfg.optimizer.head_lr_multiplier, _HEAD_NO_DECAY)):
        for group in param_groups_weight_decay(module, cfg.optimizer.weight_decay, no_weight_decay_list=excluded):
            if group["params"]:
                groups.append({**group, "lr": lr, "initial_lr": lr})
    return groups


def build_optimizer(cfg: Config, model: nn.Module, criterion: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    groups = parameter_groups(cfg, model, criterion)
    if cfg.optimizer.name == "sgd":
        return torch.optim.SGD(groups, momentum=0.9, nesterov=True)
    fused = cfg.optimizer.fused if cfg.optimizer.fused is not None else device.type == "cuda"
    return torch.optim.AdamW(groups, fused=fused)


def lr_factor(epoch: int, cfg: Config) -> float:
    """Learning-rate multiplier for an epoch (0-based): linear warmup, then cosine (T_max = epochs) or constant."""
    warmup = cfg.schedule.warmup_epochs
    if epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    if cfg.schedule.name == "constant":
        return 1.0
    span = max(1, cfg.train.epochs - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / span))


def set_learning_rate(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
