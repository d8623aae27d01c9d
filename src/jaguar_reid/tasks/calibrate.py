"""Open-set calibration of a trained run: its validation split played as a catalogue."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import DEFAULT_BACKEND
from ..evaluation.open_set import OpenSetCalibration, calibrate_open_set
from ..inference.embedder import Embedder
from ..postprocess import cosine_similarity
from ..runs import Run, run_competition


@dataclass
class OpenSetData:
    """A run's validation split played as a catalogue: its training photos are the catalogue
    (``gallery``), validation photos of trained animals and every photo of a held-out one
    (``split.unknown_fraction``) are the new photos (``queries``); embeddings L2-normalised."""

    queries: np.ndarray
    query_labels: np.ndarray
    gallery: np.ndarray
    gallery_labels: np.ndarray
    simulate_unknown: bool  # no held-out identities: known queries must also play new animals
    query_encounters: np.ndarray | None = None  # each query's group (sighting, or near-duplicates), when the split has groups

    @property
    def similarity(self) -> np.ndarray:
        """Cosine similarity (Q, G) of the queries to the gallery."""
        return cosine_similarity(self.queries, self.gallery)


def open_set_data(run: Run, embedder, data_root: str | Path | None = None) -> OpenSetData:
    """Embed a run's open-set validation (see ``OpenSetData``) with ``embedder``."""
    competition, split = run_competition(run, data_root), run.split
    queries = split.val + split.unknown
    # a held-out identity's photos carry no group in the split: each is its own encounter
    encounters = np.array([split.groups.get(name, f"unknown:{name}") for name in queries], dtype=object) if split.groups else None
    return OpenSetData(embedder.embed(competition.train_paths(queries)), competition.labels(queries),
                       embedder.embed(competition.train_paths(split.train)), competition.labels(split.train),
                       simulate_unknown=not split.unknown, query_encounters=encounters)


def calibrate_run(run: str | Path | Run, data_root: str | Path | None = None, device: str = "auto",
                  embedder: Embedder | None = None, save: bool = True, backend: str = DEFAULT_BACKEND) -> OpenSetCalibration:
    """Open-set calibration of a run on its ``open_set_data``, saved to RUN/open_set.json; when the
    split has groups, also at encounter level (the validation groups played as encounters, for
    ``identify --by-encounter``). ``embedder`` (e.g. an ensemble with this run first) replaces the
    run's own; then pass ``save=False``. A refitted run is calibrated with its stage trained without
    the validation photos (``Run.validated_members``): the same recipe, on photos it has not seen."""
    run = run if isinstance(run, Run) else Run(run)
    settings = run.config.open_set
    embedder = embedder or Embedder.from_runs(run.validated_members, device=device, backend=backend)
    data = open_set_data(run, embedder, data_root)
    similarity = data.similarity

    def calibrate(encounters=None) -> OpenSetCalibration:
        return calibrate_open_set(similarity, data.gallery_labels, data.query_labels, settings.method, settings.k,
                                  settings.target_known_called_new, simulate_unknown=data.simulate_unknown,
                                  normalization=settings.normalization, query_encounters=encounters)

    calibration = calibrate()
    if data.query_encounters is not None and len(set(data.query_encounters)) < len(data.query_encounters):
        try:
            calibration.encounter = calibrate(data.query_encounters).to_json()
        except ValueError as error:  # e.g. too few validation encounters of known animals
            calibration.notes.append(f"no encounter-level calibration: {error}")
    if save:
        run.write_open_set(calibration)
    return calibration
