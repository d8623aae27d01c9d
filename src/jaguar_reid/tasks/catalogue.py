"""A catalogue bound to runs that may not be calibrated yet: calibrate, then create or bind."""

from __future__ import annotations

from pathlib import Path

from ..catalog import Catalog
from ..config import DEFAULT_BACKEND
from ..evaluation.open_set import OpenSetCalibration
from ..inference.embedder import Embedder
from ..runs import as_runs
from .calibrate import calibrate_run


def run_calibration(runs, device: str = "auto", backend: str = DEFAULT_BACKEND) -> OpenSetCalibration:
    """The open-set calibration of one run (its own, made and saved if missing) or of an ensemble
    (made on the first run's validation split with the ensemble's embeddings, not saved)."""
    runs = as_runs(runs)
    if len(runs) == 1 and runs[0].open_set is not None:
        return runs[0].open_set
    embedder = Embedder.from_runs(runs, device=device, cache=False, backend=backend)
    return calibrate_run(runs[0], embedder=embedder, save=len(runs) == 1)


def create_catalog(location: str | Path, runs, store: str | Path | None = None, device: str = "auto",
                   backend: str = DEFAULT_BACKEND) -> Catalog:
    """``Catalog.create`` after calibrating the run(s) where needed (what ``jaguar-reid catalog create`` does)."""
    Catalog.check_new(location, store, runs)  # a bad path is refused before the run is calibrated
    return Catalog.create(location, runs, store, device, backend, run_calibration(runs, device, backend))


def bind_catalog(catalog: Catalog, runs) -> str:
    """``Catalog.bind`` after calibrating the run(s) where needed; returns the model's fingerprint."""
    return catalog.bind(runs, run_calibration(runs, catalog.device, catalog.backend))
