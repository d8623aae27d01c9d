"""A run folder as an object: its layout, its readers and writers, and its trained model.

Layout of a single-seed run::

    config.toml          the resolved config it was trained with
    data.json            where its data came from (data root, training image folder)
    split.json           the validation split
    labels.json          the training classes, in head order
    metrics.jsonl        one line per epoch (epoch 0: the untrained model)
    best.safetensors     weights of the selected epoch
    best_criterion.safetensors   the ArcFace centres (or classifier) of the selected epoch
    last.safetensors     weights of the last finished epoch
    last_state.pt        optimizer and trainer state, for resuming
    summary.json         best/last/untrained metrics and timing
    embeddings/          cached embeddings (one .npy per image set, weights and preprocessing)
    evaluation.json      the ablation of the post-processing chain on the validation split
    open_set.json        the "new individual" threshold and probability calibration (identify)
    report.html          the report

Several seeds write ``seed_<n>/`` sub-runs (each a run as above) over the same split, and the
parent holds config.toml, data.json, split.json and a summary with mean and standard deviation.

A run with a fine-tuning stage (``finetune.mode``) trains ``stages/head/`` and ``stages/finetune/``
(each a run as above, each with its own config: the stages may differ in input size) and names the
kept one in its summary; that stage is the run's model (``Run.members``). With ``train.refit`` the
kept stage is then trained again on every photo, validation included (``stages/head_all/``, and
``stages/finetune_all/`` from it): that is the model, while ``evaluate`` and ``calibrate`` score
the stage trained without the validation photos (``Run.validated_members``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .config import Config, build_config
from .data.competition import Competition, load_competition
from .data.split import Split
from .errors import RunFolderError
from .evaluation.open_set import OpenSetCalibration
from .files import atomic_path, atomic_write_json, atomic_write_text, hash_file
from .models.loading import load_trained_model

CONFIG_FILE, DATA_FILE, SPLIT_FILE, LABELS_FILE = "config.toml", "data.json", "split.json", "labels.json"
METRICS_FILE, SUMMARY_FILE, EVALUATION_FILE, REPORT_FILE = "metrics.jsonl", "summary.json", "evaluation.json", "report.html"
OPEN_SET_FILE = "open_set.json"
BEST_WEIGHTS, LAST_WEIGHTS, LAST_STATE = "best.safetensors", "last.safetensors", "last_state.pt"
_WEIGHT_FILES = {"best": BEST_WEIGHTS, "last": LAST_WEIGHTS, "best_criterion": "best_criterion.safetensors"}
EMBEDDINGS_DIR = "embeddings"
STAGES_DIR = "stages"
REFIT_SUFFIX = "_all"  # stages/<stage>_all: the kept stage trained again on every photo (train.refit)
_CACHES = {EMBEDDINGS_DIR, "onnx", STAGES_DIR}  # what a run folder may hold before it is claimed (shared feature caches, exported graphs)


class Run:
    """A run folder (single seed, or a parent of ``seed_<n>/`` members).

    >>> run = Run("runs/lite0")                    # doctest: +SKIP
    >>> run.config.model.backbone, run.summary["best"]["identity_balanced_map"]   # doctest: +SKIP
    >>> model = run.load_model()                   # doctest: +SKIP
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    # ---- reading -----------------------------------------------------------------------------

    @property
    def is_trained(self) -> bool:
        """True when this folder holds weights of its own (a single-seed run)."""
        return (self.path / BEST_WEIGHTS).exists()

    @property
    def kept_stage(self) -> Run | None:
        """A staged run's model: its kept stage (``stages/head`` or ``stages/finetune``, as its summary
        says), or that stage refitted on every photo (``stages/<stage>_all``); None for other runs."""
        summary = self.summary if not self.is_trained else None
        return Run(self.path / STAGES_DIR / summary.get("refit", summary["stage"])) if summary and "stage" in summary else None

    def _model(self) -> Run | None:
        """The single-seed model of a seed folder: itself when trained, else its kept stage (None: neither yet)."""
        return self if self.is_trained else self.kept_stage

    @property
    def members(self) -> list[Run]:
        """The single-seed models inside: this run itself, its kept stage, or those of its ``seed_*`` sub-runs."""
        model = self._model()
        if model is not None:
            return [model]
        seeds = sorted(self.path.glob("seed_*"), key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else 0)
        members = [model for model in (Run(p)._model() for p in seeds) if model is not None]
        if not members:
            raise RunFolderError(f"{self.path}: no trained model here (expected {BEST_WEIGHTS} or seed_*/{BEST_WEIGHTS}); "
                                 "train one with: jaguar-reid train --data-root DATA --out RUN")
        return members

    @property
    def validated_members(self) -> list[Run]:
        """``members``, each refitted stage replaced by the same stage trained without the validation
        photos: what scores on the validation split mean anything for (``evaluate``, ``calibrate``)."""
        return [Run(m.path.with_name(m.path.name.removesuffix(REFIT_SUFFIX))) if m.path.parent.name == STAGES_DIR else m
                for m in self.members]

    @property
    def feature_cache(self) -> Run:
        """The run whose ``embeddings/`` keeps the frozen backbone's features: a stage's parent run
        (its stages, refits included, embed the same photos with the same frozen backbone), else itself."""
        return Run(self.path.parent.parent) if self.path.parent.name == STAGES_DIR else self

    def _require(self, name: str) -> Path:
        path = self.path / name
        if not path.exists():
            if not self.path.is_dir():
                raise RunFolderError(f"{self.path}: run folder not found")
            raise RunFolderError(f"{self.path}: not a finished jaguar-reid run ({name} is missing)")
        return path

    @cached_property
    def config(self) -> Config:
        """The resolved config it was trained with (a multi-seed parent: its first seed's)."""
        path = self.path / CONFIG_FILE
        if not path.exists() and self.path.is_dir() and not self.is_trained:
            path = self.members[0].path / CONFIG_FILE
        if not path.exists():
            self._require(CONFIG_FILE)
        return read_config(path)

    @property
    def split(self) -> Split:
        """The validation split (split.json)."""
        return Split.load(self._require(SPLIT_FILE))

    @property
    def classes(self) -> list[str]:
        """Training classes in the order of the head's centres."""
        return json.loads(self._require(LABELS_FILE).read_text())

    @property
    def data_source(self) -> dict:
        """``data_root`` and ``train_images`` of the data it was trained on."""
        return json.loads(self._require(DATA_FILE).read_text())

    @property
    def history(self) -> list[dict]:
        """metrics.jsonl as a list of per-epoch records (empty before the first evaluation)."""
        path = self.path / METRICS_FILE
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    @property
    def summary(self) -> dict | None:
        """summary.json, or None before training finished."""
        path = self.path / SUMMARY_FILE
        return json.loads(path.read_text()) if path.exists() else None

    @property
    def evaluation(self) -> list[dict] | None:
        """evaluation.json rows, or None before ``evaluate``."""
        path = self.path / EVALUATION_FILE
        return json.loads(path.read_text()) if path.exists() else None

    @property
    def open_set(self):
        """The ``OpenSetCalibration`` written by ``calibrate_run``, or None."""
        path = self.path / OPEN_SET_FILE
        return OpenSetCalibration.from_json(json.loads(path.read_text())) if path.exists() else None

    def fingerprint(self) -> str:
        """Names the trained model: a hash of every member's config and weights (16 hex digits).
        Embeddings made by a run with another fingerprint are not comparable with this run's."""
        digest = hashlib.sha256()
        for member in self.members:
            digest.update(member._require(CONFIG_FILE).read_bytes())
            hash_file(digest, member.weights("best"))
        return digest.hexdigest()[:16]

    def weights(self, checkpoint: str = "best") -> Path:
        """The path of the best (or last) weights of this single-seed run."""
        if checkpoint not in ("best", "last"):
            raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
        member = self.single_member()
        return member._require(BEST_WEIGHTS if checkpoint == "best" else LAST_WEIGHTS)

    def single_member(self, seed: int | None = None) -> Run:
        """This run if it has one seed, else its ``seed_<seed>`` member."""
        members = self.members
        if seed is not None:
            chosen = [m for m in members if m.path.name == f"seed_{seed}"] or [m for m in members if m.config.train.seed == seed]
            if not chosen:
                raise RunFolderError(f"{self.path}: no seed {seed} (it holds {', '.join(m.path.name for m in members)})")
            return chosen[0]
        if len(members) > 1:
            raise RunFolderError(f"{self.path}: holds {len(members)} seeds ({', '.join(m.path.name for m in members)}); "
                                 "pass seed=N for one of them, or Embedder.from_runs([run]) to ensemble them")
        return members[0]

    def load_model(self, checkpoint: str = "best", seed: int | None = None):
        """The trained ``ReIDModel`` (eval mode, on CPU) with its best (or last) weights."""
        member = self.single_member(seed)
        return load_trained_model(member.config, member.weights(checkpoint))

    # ---- writing -----------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """True once a first epoch has finished (or an epochs=0 run has); before that the folder is not a run yet."""
        return any((self.path / name).exists() for name in (LAST_STATE, SUMMARY_FILE)) or any(
            any(self.path.glob(f"{member}/{name}")) for member in ("seed_*", f"{STAGES_DIR}/*", f"seed_*/{STAGES_DIR}/*")
            for name in (LAST_STATE, SUMMARY_FILE))

    def claim(self, cfg: Config, overwrite: bool = False, resume: bool = False) -> None:
        """Make this folder the run of ``cfg``: refuse a different run unless told to resume or overwrite.

        A folder whose training never saved anything (stopped by bad input before the first
        evaluation) is not a run yet and is simply taken over.
        """
        config_path = self.path / CONFIG_FILE
        if config_path.exists():
            if overwrite or not self.started:
                shutil.rmtree(self.path)
            elif not read_config(config_path).same_run_as(cfg) and not resume:
                raise RunFolderError(
                    f"{self.path}: holds a run with a different config; pass --resume to continue it with this config, "
                    "--overwrite to start again, or choose another --out"
                )
        elif self.path.exists() and any(p.name not in _CACHES for p in self.path.iterdir()):  # a cache is not a run
            if not overwrite:
                raise RunFolderError(f"{self.path}: exists and is not a jaguar-reid run folder; choose another --out or pass --overwrite")
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(config_path, cfg.to_toml())
        self.__dict__.pop("config", None)

    def write_data_source(self, data_root: str | Path, train_images: str | Path) -> None:
        """Record the data root and training image folder (data.json)."""
        atomic_write_json(self.path / DATA_FILE, {"data_root": str(Path(data_root).resolve()),
                                                  "train_images": str(Path(train_images).resolve())})

    def write_split(self, split: Split) -> None:
        """Write split.json."""
        split.save(self.path / SPLIT_FILE)

    def write_classes(self, classes: list[str]) -> None:
        """Write the head's classes, in head order (labels.json)."""
        atomic_write_json(self.path / LABELS_FILE, classes)

    def write_history(self, history: list[dict]) -> None:
        """Write metrics.jsonl, one line per epoch."""
        atomic_write_text(self.path / METRICS_FILE, "".join(json.dumps(row) + "\n" for row in history))

    def write_summary(self, summary: dict) -> None:
        """Write summary.json."""
        atomic_write_json(self.path / SUMMARY_FILE, summary)

    def write_evaluation(self, rows: list[dict]) -> None:
        """Write evaluation.json."""
        atomic_write_json(self.path / EVALUATION_FILE, rows)

    def write_open_set(self, calibration) -> None:
        """Write open_set.json (an ``OpenSetCalibration``)."""
        atomic_write_json(self.path / OPEN_SET_FILE, calibration.to_json())

    def save_weights(self, state: dict, checkpoint: str, metadata: dict[str, str]) -> None:
        """Save a state dict as ``best``, ``last`` or ``best_criterion`` (safetensors)."""
        with atomic_path(self.path / _WEIGHT_FILES[checkpoint]) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)

    def load_weights(self, checkpoint: str = "best") -> dict:
        """The state dict saved as ``best``, ``last`` or ``best_criterion`` (tensors on the CPU)."""
        return load_file(str(self._require(_WEIGHT_FILES[checkpoint])))

    def save_state(self, state: dict) -> None:
        """Save the resumable trainer state (last_state.pt; tensors and plain Python values only)."""
        with atomic_path(self.path / LAST_STATE) as tmp:
            torch.save(state, tmp)

    def load_state(self) -> dict | None:
        """The resumable trainer state, or None for a run that has not finished an epoch."""
        path = self.path / LAST_STATE
        return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None

    def cached_embeddings(self, key: str):
        """The cached embeddings (a .npy) under ``key``, or None."""
        path = self.path / EMBEDDINGS_DIR / f"{key}.npy"
        return np.load(path) if path.exists() else None

    def save_embeddings(self, key: str, embeddings) -> None:
        """Cache embeddings under ``key`` (atomically)."""
        with atomic_path(self.path / EMBEDDINGS_DIR / f"{key}.npy") as tmp:
            np.save(tmp, embeddings)


def read_config(path: str | Path) -> Config:
    """The ``Config`` in a TOML file (a run's config.toml)."""
    path = Path(path)
    return build_config(tomllib.loads(path.read_text()), str(path))


def run_competition(run: Run, data_root: str | Path | None = None) -> Competition:
    """The competition a run was trained on (its recorded data root and image folder), or the one at ``data_root``."""

    source = run.data_source
    return load_competition(data_root or source["data_root"], train_images=None if data_root else source["train_images"])


def as_runs(runs) -> list[Run]:
    """One run or several (folders or ``Run`` objects) as a list of ``Run``."""
    if isinstance(runs, (str, Path, Run)):
        runs = [runs]
    return [r if isinstance(r, Run) else Run(r) for r in runs]


def ensemble_fingerprint(runs) -> str:
    """Names an ensemble of runs: a run's own ``fingerprint()``, or for several a hash of theirs
    (16 hex digits). The catalogue and the ONNX graph's metadata both record this."""
    parts = [run.fingerprint() for run in runs]
    return parts[0] if len(parts) == 1 else hashlib.sha256("+".join(parts).encode()).hexdigest()[:16]
