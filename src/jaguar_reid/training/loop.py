"""The epoch loop of one seed: ``train_one`` = ``setup``, then per epoch ``train_epoch``,
``validate``, ``save_checkpoint`` and a log line; the summary at the end."""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..config import Config
from ..data.competition import Competition
from ..data.split import Split
from ..devices import tf32
from ..evaluation.metrics import (
    METRIC_NAMES,
    OTHER_GROUPS,
    compute_metrics,
    scalar_metrics,
)
from ..inference.embed import embed_images
from ..postprocess import cosine_similarity
from ..runs import Run
from .checkpoint import save_best, save_checkpoint, unwrap
from .features import neck_embeddings
from .optim import lr_factor, set_learning_rate
from .session import Distributed, Session, setup


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
                session.ema.update(unwrap(session.model), step=session.steps)
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
        embeddings = neck_embeddings(model, session.val_features, session.device)
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


def _epoch_line(record: dict, selection: str) -> str:
    parts = [f"{k.removeprefix('loss_')} {v:.4f}" for k, v in record.items() if k.startswith("loss_")]
    shown = [key for key in dict.fromkeys([selection, "identity_balanced_map"]) if key in record]
    metrics = "".join(f"  {key} {record[key]:.4f}" for key in shown)  # none on an epoch that was not validated
    return (f"epoch {record['epoch']}: loss {record['loss']:.4f}{f' ({chr(44).join(parts)})' if len(parts) > 1 else ''}"
            f"{metrics}  ({record['seconds']:.0f} s, {record['images_per_second']:.1f} img/s)")


def train_one(cfg: Config, competition: Competition, split: Split, run: Run, weights: str | None = None,
              distributed: Distributed | None = None, init_from: Run | None = None,
              start_metrics: dict | None = None, stop_after: int | None = None,
              validate_each_epoch: bool = True) -> dict:
    """Train one seed into ``run`` (resuming from its last finished epoch if there is one); returns its summary.

    Epoch 0, the first candidate, is the starting model: the pretrained backbone, or the model of
    ``init_from`` (whose validation metrics ``start_metrics`` are, so they are not computed again).
    ``stop_after``: stop after this epoch, on the schedule of ``train.epochs`` (a refit to the kept epoch).
    ``validate_each_epoch=False``: validate the first and last epochs only (a refit, whose
    validation photos are training photos: nothing to choose, with ``train.keep_epoch = "last"``).
    """
    if not validate_each_epoch and cfg.train.keep_epoch != "last":
        raise ValueError("training without validating each epoch must keep the last epoch (train.keep_epoch = 'last')")
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
                save_best(session, {"epoch": "0", "backbone": cfg.model.backbone})
        last_epoch = cfg.train.epochs if stop_after is None else stop_after
        for epoch in range(session.start_epoch, last_epoch):
            record = train_epoch(session, epoch)
            if validate_each_epoch or epoch + 1 == last_epoch:
                record.update(validate(session))
            session.history.append(record)
            improved = cfg.train.keep_epoch == "last" or record[selection] > session.best["value"]
            if improved:
                session.best = {"epoch": epoch + 1, "value": record.get(selection, math.nan)}
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
