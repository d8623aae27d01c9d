"""The default's two stages (LP-FT, Kumar et al. 2022): a head on frozen features, then a fine-tune.

Stage one trains the neck and ArcFace head on cached frozen features (``train.head_only``): with a
handful of photos per animal that is what holds up on new sightings. Stage two, where the data
supports it (``finetune.mode``), unfreezes the backbone and fine-tunes it starting from that
head, so the first gradients do not distort good features to fit a random head. Its epoch 0 is
the head itself. The stage's candidate is its last epoch (``finetune.keep_epoch``: the schedule
decides, since a small validation split, above all one of automatic groups, picks noise), kept
only when it validates better than the head on the selection metric (other groups' pairs when
there are groups): never worse than the head, which is never worse than the frozen features.

With ``train.refit`` the choice is then trained again on every photo, validation included
(``refit_split``): the head to its kept epoch, and a kept fine-tune from that head to its kept
epoch, each on the schedule it was chosen with; ``head`` does so only when the head is kept (its
features are cached: seconds), ``always`` also trains a kept fine-tune a second time. The score on
new sightings follows the photos trained on; what the split measured stays the run's measurement
(``evaluate`` and ``calibrate`` score the stage trained without the validation photos).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..config import Config
from ..data.competition import Competition
from ..data.split import Split
from ..runs import REFIT_SUFFIX, STAGES_DIR, Run
from .loop import train_one
from .session import Distributed

HEAD, FINETUNE = "head", "finetune"


@dataclass
class FinetuneDecision:
    """Whether to run the fine-tuning stage, and the sentence that says why."""

    run: bool
    reason: str


def uses_stages(cfg: Config) -> bool:
    """True when ``cfg`` trains a head on frozen features and may fine-tune after it."""
    return cfg.train.head_only and cfg.train.epochs > 0 and cfg.finetune.mode != "never"


def finetune_decision(cfg: Config, train_labels) -> FinetuneDecision:
    """The rule of ``finetune.mode = auto``: fine-tune when the median identity has at least
    ``finetune.min_images_per_identity`` training photos (measured: with a median of 6, as on the
    nyala set, fine-tuning memorises sightings; with 22, as on the cattle set, it scores 3x the
    head across sightings)."""
    counts = np.unique(np.asarray(train_labels), return_counts=True)[1]
    median, needed = float(np.median(counts)), cfg.finetune.min_images_per_identity
    data = f"median {median:g} training photos per identity"
    if cfg.finetune.mode == "always":
        return FinetuneDecision(True, f"{data}; finetune.mode = always")
    if median >= needed:
        return FinetuneDecision(True, f"{data} (fine-tuning pays from {needed:g})")
    return FinetuneDecision(False, f"{data}, below the {needed:g} where fine-tuning pays: the head is kept")


def train_stages(cfg: Config, competition: Competition, split: Split, run: Run, weights: str | None,
                 distributed: Distributed) -> dict:
    """Train the head, then maybe fine-tune from it. Returns the kept stage's summary with ``stage``
    (the run's model: ``stages/<stage>``), ``choice`` (why) and every stage's best metrics."""
    head_cfg = cfg.with_overrides({"finetune.mode": "never"})
    head_run = _stage_run(run, HEAD, head_cfg, split, distributed)
    head = train_one(head_cfg, competition, split, head_run, weights, distributed)
    decision = finetune_decision(cfg, competition.labels(split.train))
    summaries, kept, choice = {HEAD: head}, HEAD, decision.reason
    if decision.run:
        ft_cfg = cfg.finetune.stage_config(cfg)
        ft_run = _stage_run(run, FINETUNE, ft_cfg, split, distributed)
        if cfg.finetune.init == "head":
            start = _start_metrics(next(row for row in head_run.history if row["epoch"] == head["best_epoch"]))
            finetune = train_one(ft_cfg, competition, split, ft_run, None, distributed, init_from=head_run, start_metrics=start)
        else:
            finetune = train_one(ft_cfg, competition, split, ft_run, weights, distributed)
        summaries[FINETUNE] = finetune
        key = finetune["selection_metric"]
        versus = f"{finetune['best'][key]:.4f} vs the head's {head['best'][key]:.4f} on {key}"
        if finetune["best_epoch"] > 0 and finetune["best"][key] > head["best"][key]:
            kept, choice = FINETUNE, f"{choice}; fine-tuning kept ({versus})"
        else:
            lost = "the last fine-tuning epoch did not beat" if ft_cfg.train.keep_epoch == "last" else "no fine-tuning epoch beat"
            choice = f"{choice}; {lost} the head ({versus}): the head is kept"
    refit = {}
    wanted = cfg.train.refit == "always" or (cfg.train.refit == "head" and kept == HEAD)
    if wanted and (split.val or split.unknown) and summaries[kept]["best_epoch"] > 0:
        refit = _refit(cfg, competition, split, run, weights, distributed, kept, summaries)
        choice = f"{choice}; then trained again on all {refit[kept + REFIT_SUFFIX]['n_train_images']} photos (train.refit)"
    # "untrained" stays the frozen pretrained model (the fine-tuning stage's epoch 0 is the head).
    stages = {**summaries, **refit}
    return {**summaries[kept], "untrained": head["untrained"], "stage": kept, "choice": choice,
            **({"refit": kept + REFIT_SUFFIX} if refit else {}),
            "stages": {name: {k: s[k] for k in ("best_epoch", "epochs", "best", "train_seconds", "n_train_images")}
                       for name, s in stages.items()},
            "train_seconds": round(sum(s["train_seconds"] for s in stages.values()), 3)}


def refit_split(split: Split) -> Split:
    """``split`` with every photo in training: validation and held-out identities (each held-out
    photo its own group). Its validation photos stay, as a log of photos it trained on."""
    unknown_groups = {name: f"unknown:{name}" for name in split.unknown} if split.groups else {}
    return replace(split, train=sorted(split.train + split.val + split.unknown), unknown=[], unknown_fraction=0.0,
                   groups={**split.groups, **unknown_groups},
                   notes=[*split.notes, "refit: trained on every photo, validation included; its scores on them are not a measurement"])


def _refit(cfg: Config, competition: Competition, split: Split, run: Run, weights: str | None,
           distributed: Distributed, kept: str, summaries: dict) -> dict:
    """The kept stage trained again on ``refit_split``, stopped at its kept epoch on its own schedule,
    as it was first trained: a fine-tune from the head (refitted first) or from the pretrained
    backbone (``finetune.init``). Returns their summaries by stage folder name."""
    everything, refit, head_run = refit_split(split), {}, None
    if kept == HEAD or cfg.finetune.init == "head":
        head_cfg = cfg.with_overrides({"finetune.mode": "never", "train.keep_epoch": "last", "train.refit": "never"})
        head_run = _stage_run(run, HEAD + REFIT_SUFFIX, head_cfg, everything, distributed)
        refit[head_run.path.name] = train_one(head_cfg, competition, everything, head_run, weights, distributed,
                                              stop_after=summaries[HEAD]["best_epoch"], validate_each_epoch=False)
    if kept == FINETUNE:
        ft_cfg = cfg.finetune.stage_config(cfg).with_overrides({"train.keep_epoch": "last", "train.refit": "never"})
        ft_run = _stage_run(run, FINETUNE + REFIT_SUFFIX, ft_cfg, everything, distributed)
        start = {"init_from": head_run, "start_metrics": _start_metrics(head_run.history[-1])} if head_run else {}
        refit[ft_run.path.name] = train_one(ft_cfg, competition, everything, ft_run, None if head_run else weights, distributed,
                                            stop_after=summaries[FINETUNE]["best_epoch"], validate_each_epoch=False, **start)
    return refit


def _start_metrics(record: dict) -> dict:
    """A history record's validation metrics (no epoch, loss or timing): a next stage's epoch 0."""
    return {k: v for k, v in record.items() if k not in ("epoch", "loss", "lr", "seconds", "images_per_second")
            and not k.startswith("loss_")}


def _stage_run(run: Run, name: str, cfg: Config, split: Split, distributed) -> Run:
    stage = Run(run.path / STAGES_DIR / name)
    if distributed.is_main:
        stage.claim(cfg, resume=True)
        stage.write_split(split)
    return stage
