"""Checkpoint I/O for the loop: the best and last weights, the resumable state, and restoring it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from torch import nn

from ..runs import Run

if TYPE_CHECKING:  # the session module builds on this one
    from .session import Session


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel and torch.compile wrappers."""
    module = getattr(module, "module", module)  # DistributedDataParallel
    return getattr(module, "_orig_mod", module)  # torch.compile


def load_weights(model: nn.Module, criterion: nn.Module, state: dict | None, init_from: Run | None) -> None:
    """Start from the resumable ``state`` (the last finished epoch), else from ``init_from``'s best
    model and ArcFace centres (LP-FT), else leave the fresh model as it is."""
    if state:
        model.load_state_dict(state["model"])
        criterion.load_state_dict(state["criterion"])
    elif init_from is not None:
        model.load_state_dict(init_from.load_weights("best"))
        criterion.load_state_dict(init_from.load_weights("best_criterion"))


def restore(session: Session, state: dict | None) -> None:
    """Put the optimizer, EMA, history, best epoch and step count of ``state`` back; the loop
    continues at ``session.start_epoch``."""
    if not state:
        return
    session.optimizer.load_state_dict(state["optimizer"])
    session.history, session.best, session.start_epoch = state["history"], state["best"], state["epoch"]
    session.steps = state.get("steps", 0)
    if session.ema is not None:
        session.ema.load_state_dict(state["ema"])


def save_checkpoint(session: Session, epoch: int, improved: bool) -> None:
    """Best and last weights (the EMA's when there is one; the best with its ArcFace centres, the
    start of a fine-tuning stage), the resumable state and metrics.jsonl (rank 0 only)."""
    run, model = session.run, session.evaluated_model
    meta = {"epoch": str(epoch), "backbone": session.cfg.model.backbone}
    if improved:
        save_best(session, meta)
    run.save_weights(model.state_dict(), "last", meta)
    state = {"model": unwrap(session.model).state_dict(), "criterion": session.criterion.state_dict(),
             "optimizer": session.optimizer.state_dict(), "epoch": epoch, "steps": session.steps,
             # plain Python numbers only, so the state loads with torch.load(weights_only=True)
             "history": json.loads(json.dumps(session.history)), "best": json.loads(json.dumps(session.best))}
    if session.ema is not None:
        state["ema"] = session.ema.state_dict()
    run.save_state(state)
    run.write_history(session.history)


def save_best(session: Session, meta: dict[str, str]) -> None:
    """The validated weights and their ArcFace centres as ``best``."""
    session.run.save_weights(session.evaluated_model.state_dict(), "best", meta)
    session.run.save_weights(session.criterion.state_dict(), "best_criterion", meta)
