"""The re-sighting benchmark: is a new sighting of a known animal recognised?

For every identity with at least four groups (sightings, encounters, camera-days), about a quarter
of its groups are held out (``split.min_groups = 4``, ``split.val_fraction = 0.25``,
``split.min_val_groups = 1``); identities with fewer stay in training. Each recipe is trained per
split seed and scored over all validation pairs, over pairs from different groups only (the
honest number: two photos of one sighting share background and light), over same-side pairs (an
animal's flanks differ) and both; frozen pretrained features are a recipe like any other (``train.epochs = 0``). Results are the
mean and standard deviation over split seeds.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Config
from ..data.competition import load_competition
from ..data.split import make_split, read_metadata_column
from ..evaluation.evaluate import ablation, pair_subsets
from ..evaluation.metrics import METRIC_NAMES
from ..files import atomic_write_text
from ..inference.embedder import Embedder
from ..runs import EMBEDDINGS_DIR, Run
from ..training.trainer import train

RESIGHTING = {"split.min_groups": 4, "split.val_fraction": 0.25, "split.min_val_groups": 1}


@dataclass
class Recipe:
    """A named training config to benchmark."""
    name: str
    config: Config


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]


def resighting_benchmark(recipes: list[Recipe], data_root: str | Path, metadata_csv: str | Path, out: str | Path,
                         group_column: str = "sighting", side_column: str | None = "flank",
                         split_seeds: tuple[int, ...] = (0, 1, 2), share_features_from: str | None = None,
                         metadata_in_training: bool = True) -> list[dict]:
    """Train and score every recipe on every split seed; one result row per (recipe, split seed, step, pairs).

    ``share_features_from``: a recipe whose cached head-only features the others may reuse (their
    cache keys still decide: a recipe whose data or backbone differs computes its own).
    ``metadata_in_training=False``: the held-out sightings are the same, but training sees only a
    train.csv of the other photos (no sightings: it splits and selects on its automatic groups),
    as a Kaggle competitor would; the score is on the held-out sightings. With the sightings in
    training, its validation split is the held-out sightings, so ``train.refit`` is off there.
    """
    out = Path(out)
    competition = load_competition(data_root)
    files = competition.train["filename"].tolist()
    rows = []
    for seed in split_seeds:
        held_out = make_split(files, competition.labels(files), RESIGHTING["split.val_fraction"], seed,
                              read_metadata_column(metadata_csv, group_column, files), group_column,
                              RESIGHTING["split.min_groups"], min_val_groups=RESIGHTING["split.min_val_groups"])
        for recipe in recipes:
            run = Run(out / _slug(recipe.name) / f"split_{seed}")
            if share_features_from and recipe.name != share_features_from:
                _share_features(out / _slug(share_features_from) / f"split_{seed}", run)
            started = time.time()
            if metadata_in_training:
                # the validation split is the held-out sightings here: a refit would train on them
                cfg = recipe.config.with_overrides({**RESIGHTING, "split.split_seed": seed, "split.group_column": group_column,
                                                    "split.metadata_csv": str(metadata_csv), "train.refit": "never"})
                summary = train(cfg, data_root, run.path)
            else:
                summary = train(recipe.config, _training_table(competition, held_out.train, out / f"train_csv_split_{seed}"),
                                run.path, train_images=competition.train_dir)
            wall = time.time() - started
            names = held_out.val
            paths, labels = competition.train_paths(names), competition.labels(names)
            groups = read_metadata_column(metadata_csv, group_column, names)
            sides = read_metadata_column(metadata_csv, side_column, names) if side_column else None
            raw, tta = Embedder.from_runs([run]).embed_views(paths, recipe.config.postprocess.flip_tta)
            for subset, exclude in pair_subsets(groups, _clean_sides(sides)).items():
                for step, metrics in ablation(raw, tta, labels, recipe.config.postprocess,
                                              flip=recipe.config.postprocess.flip_tta, exclude=exclude):
                    rows.append({"recipe": recipe.name, "split_seed": seed, "pairs": subset, "step": step,
                                 "epoch_seconds": summary["train_seconds"], "train_wall_seconds": round(wall, 1),
                                 "best_epoch": summary["best_epoch"], "stage": summary.get("stage", "single"),
                                 "refit": "refit" in summary,
                                 "selection_metric": summary["selection_metric"],
                                 "validation_score": summary["best"][summary["selection_metric"]],
                                 "choice": summary.get("choice"), "n_val_images": len(paths),
                                 "n_val_identities": int(len(set(labels))), **{k: metrics[k] for k in METRIC_NAMES}})
    return rows


def _training_table(competition, filenames: list[str], folder: Path) -> Path:
    """A data root whose train.csv lists only ``filenames`` (the images stay where they are)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = competition.train.set_index("filename").loc[filenames].reset_index()
    atomic_write_text(folder / "train.csv", table[["filename", "ground_truth"]].to_csv(index=False))
    return folder


def _clean_sides(sides):
    """Side labels without duplicate markers such as ``left(1)``."""
    return None if sides is None else [re.sub(r"\(\d+\)$", "", s) for s in sides]


def _share_features(source: Run | Path, target: Run) -> None:
    """Copy the cached feature files of ``source`` (where its stages keep them too) into ``target``;
    each recipe still reads only the keys its own settings name."""
    files = sorted((Path(source) / EMBEDDINGS_DIR).glob("*.npy"))
    folder = target.path / EMBEDDINGS_DIR
    if files and not folder.exists():
        folder.mkdir(parents=True)
        for file in files:
            shutil.copyfile(file, folder / file.name)


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


def summary_table(rows: list[dict], step: str = "+ flip TTA") -> str:
    """One line per recipe at ``step``: identity-balanced mAP over all pairs and other groups'
    pairs, rank-1 over other groups (mean ± std over split seeds), training wall time, kept stages
    (``+ refit``: trained again on every photo)."""
    frame = pd.DataFrame(rows)
    frame = frame[frame["step"] == step]
    lines = ["| recipe | all pairs | other groups | rank-1, other groups | train min (mean) | kept | split seeds |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for recipe, group in frame.groupby("recipe", sort=False):
        cell = {}
        for pairs, metric in (("all pairs", "identity_balanced_map"), ("other groups", "identity_balanced_map"),
                              ("other groups", "retrieval_top1")):
            values = group.loc[group["pairs"] == pairs, metric]
            cell[pairs, metric] = f"{values.mean():.4f} ± {float(np.std(values)):.4f}" if len(values) else ""
        per_seed = group.drop_duplicates("split_seed")
        refit = per_seed.get("refit", pd.Series(False, index=per_seed.index)).fillna(False).astype(bool)  # older rows: none
        stages = per_seed["stage"].where(~refit, per_seed["stage"] + " + refit")
        kept = ", ".join(f"{stage} x{count}" for stage, count in stages.value_counts().items())
        lines.append(f"| {recipe} | {cell['all pairs', 'identity_balanced_map']} | {cell['other groups', 'identity_balanced_map']} | "
                     f"{cell['other groups', 'retrieval_top1']} | {per_seed['train_wall_seconds'].mean() / 60:.1f} | {kept} | "
                     f"{per_seed['split_seed'].nunique()} |")
    return "\n".join(lines)
