"""Optimizer and learning-rate schedule: parameter groups as data (timm's weight-decay rules)."""

from __future__ import annotations

import math

import torch
from timm.optim import param_groups_layer_decay, param_groups_weight_decay
from torch import nn

from ..config import Config

# The head's class centres: L2-normalised inside ArcFace, so decay only shrinks a norm that is never used.
_HEAD_NO_DECAY = ("criterion.arcface.W",)


def parameter_groups(cfg: Config, model: nn.Module, criterion: nn.Module) -> list[dict]:
    """Backbone at ``optimizer.lr`` (its last layer; with ``layer_decay`` < 1 each earlier layer at
    that factor times the next one's, timm's grouping), head (pooling, neck, loss) at
    ``lr x head_lr_multiplier``; no weight decay on 1-D parameters (norms, GeM's p), biases or the
    ArcFace centres. Frozen parameters are left out."""
    head = nn.ModuleDict({"pool": model.pool, "neck": model.neck, "criterion": criterion})
    decay = cfg.optimizer.weight_decay
    if cfg.optimizer.layer_decay < 1.0:
        backbone = param_groups_layer_decay(model.backbone, decay, layer_decay=cfg.optimizer.layer_decay)
    else:
        backbone = param_groups_weight_decay(model.backbone, decay)
    groups = []
    for module_groups, lr in ((backbone, cfg.optimizer.lr),
                              (param_groups_weight_decay(head, decay, no_weight_decay_list=_HEAD_NO_DECAY),
                               cfg.optimizer.lr * cfg.optimizer.head_lr_multiplier)):
        for group in module_groups:
            params = [p for p in group["params"] if p.requires_grad]
            if params:
                scaled = lr * group.pop("lr_scale", 1.0)
                groups.append({**group, "params": params, "lr": scaled, "initial_lr": scaled})
    return groups


def build_optimizer(cfg: Config, model: nn.Module, criterion: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """AdamW or SGD over the model and criterion: head learning rate, layer decay, no weight decay on 1-D parameters."""
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
    """Scale every parameter group's initial learning rate by ``factor``."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
