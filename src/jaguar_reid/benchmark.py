"""The re-sighting benchmark: is a new sighting of a known animal recognised?

For every identity with at least four groups (sightings, encounters, camera-days), about a quarter
of its groups are held out (``split.min_groups = 4``, ``split.val_fraction = 0.25``); identities
with fewer stay in training. Each recipe is trained per split seed and scored over all
validation pairs, over pairs from different groups only (the honest number: two photos of one
sighting share background and light), over same-side pairs (an animal's flanks differ) and both;
frozen pretrained features are a recipe like any other (``train.epochs = 0``). Results are the
mean and standard deviation over split seeds.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import Config
from .data.split import read_metadata_column
from .evaluation.evaluate import ablation, pair_subsets, validation_set
from .evaluation.metrics import METRIC_NAMES
from .inference.embedder import Embedder
from .runs import EMBEDDINGS_DIR, Run
from .training.trainer import train

RESIGHTING = {"split.min_groups": 4, "split.val_fraction": 0.25}


@dataclass
class Recipe:
    name: str
    config: Config


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]


def resighting_benchmark(recipes: list[Recipe], data_root: str | Path, metadata_csv: str | Path, out: str | Path,
                         group_column: str = "sighting", side_column: str | None = "flank",
                         split_seeds: tuple[int, ...] = (0, 1, 2), share_features_from: str | None = None) -> list[dict]:
    """Train and score every recipe on every split seed; one result row per (recipe, split seed, step, pairs).

    ``share_features_from``: a recipe whose cached head-only features the others may reuse (their
    cache keys still decide: a recipe whose data or backbone differs computes its own).
    """
    out = Path(out)
    rows = []
    for seed in split_seeds:
        for recipe in recipes:
            cfg = recipe.config.with_overrides({**RESIGHTING, "split.split_seed": seed, "split.group_column": group_column,
                                                "split.metadata_csv": str(metadata_csv)})
            run = Run(out / _slug(recipe.name) / f"split_{seed}")
            if share_features_from and recipe.name != share_features_from:
                _share_features(out / _slug(share_features_from) / f"split_{seed}", run)
            summary = train(cfg, data_root, run.path)
            paths, labels = validation_set(run)
            names = [Path(p).name for p in paths]
            groups = read_metadata_column(metadata_csv, group_column, names)
            sides = read_metadata_column(metadata_csv, side_column, names) if side_column else None
            embedder = Embedder.from_runs([run])
            raw, tta = embedder.embed_views(paths, cfg.postprocess.flip_tta)
            for subset, exclude in pair_subsets(groups, _clean_sides(sides)).items():
                for step, metrics in ablation(raw, tta, labels, cfg.postprocess, flip=cfg.postprocess.flip_tta, exclude=exclude):
                    rows.append({"recipe": recipe.name, "split_seed": seed, "pairs": subset, "step": step,
                                 "epoch_seconds": summary["train_seconds"], "best_epoch": summary["best_epoch"],
                                 "n_val_images": len(paths), "n_val_identities": int(len(set(labels))),
                                 **{k: metrics[k] for k in METRIC_NAMES}})
    return rows


def _clean_sides(sides):
    """Side labels without duplicate markers such as ``left(1)``."""
    return None if sides is None else [re.sub(r"\(\d+\)$", "", s) for s in sides]


def _share_features(source: Run | Path, target: Run) -> None:
    source = Path(source) / EMBEDDINGS_DIR
    if source.is_dir() and not (target.path / EMBEDDINGS_DIR).exists():
        target.path.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target.path / EMBEDDINGS_DIR)


def summarise(rows: list[dict], steps: tuple[str, ...] = ("raw",)) -> pd.DataFrame:
    """Mean and (population) standard deviation over split seeds of identity-balanced mAP, per recipe, step and pair subset."""
    frame = pd.DataFrame(rows)
    frame = frame[frame["step"].isin(steps)]
    grouped = frame.groupby(["recipe", "step", "pairs"], sort=False)["identity_balanced_map"]
    return grouped.agg(mean="mean", std=lambda x: float(np.std(x)), count="count").reset_index()


def markdown_table(rows: list[dict], steps: tuple[str, ...] = ("raw",)) -> str:
    """recipe x pair subset, ``mean ± std`` of identity-balanced mAP over split seeds, one line per recipe and step."""
    table = summarise(rows, steps)
    subsets = list(dict.fromkeys(table["pairs"]))
    lines = ["| recipe | step | " + " | ".join(subsets) + " | split seeds |", "|---|---|" + "---:|" * (len(subsets) + 1)]
    for (recipe, step), group in table.groupby(["recipe", "step"], sort=False):
        cells = {row.pairs: f"{row.mean:.4f} ± {0.0 if np.isnan(row.std) else row.std:.4f}" for row in group.itertuples()}
        lines.append(f"| {recipe} | {step} | " + " | ".join(cells.get(s, "") for s in subsets) + f" | {group['count'].max()} |")
    return "\n".join(lines)
