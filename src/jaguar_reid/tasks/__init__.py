"""What needs several layers at once: evaluate, calibrate and predict with trained runs, catalogues
bound to uncalibrated runs, and the re-sighting benchmark. Nothing below this package imports it."""

from .calibrate import OpenSetData, calibrate_run, open_set_data
from .catalogue import bind_catalog, create_catalog, run_calibration
from .evaluate import (
           background_diagnostic,
           evaluate_embedder,
           evaluate_run,
           validated_chain,
           validation_set,
)
from .predict import predict

__all__ = ["OpenSetData", "background_diagnostic", "bind_catalog", "calibrate_run", "create_catalog",
           "evaluate_embedder", "evaluate_run", "open_set_data", "predict", "run_calibration", "validated_chain",
           "validation_set"]
