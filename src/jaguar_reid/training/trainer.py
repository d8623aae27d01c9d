"""``train``: one run per seed over one validation split, single process or DistributedDataParallel.

A seed trains one stage (``loop.train_one``) or, for the head-only default, the head and maybe a
fine-tune (``stages.train_stages``). The run folder's layout belongs to ``Run``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..config import Config
from ..data.competition import Competition, load_competition
from ..data.split import Split, build_split
from ..devices import resolve_device
from ..runs import Run
from .features import automatic_groups
from .loop import train_one
from .session import Distributed
from .stages import train_stages, uses_stages


def _train_seed(cfg: Config, competition: Competition, split: Split, run: Run, weights: str | None,
                distributed: Distributed) -> dict:
    """One seed: a single stage, or the head then maybe a fine-tune (``finetune.mode``); writes its summary."""
    if not uses_stages(cfg):
        return train_one(cfg, competition, split, run, weights, distributed)
    summary = train_stages(cfg, competition, split, run, weights, distributed)
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
