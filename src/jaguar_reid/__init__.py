"""jaguar-reid: re-identify individual animals from photos.

The public API, imported lazily (``import jaguar_reid`` loads no torch until a name is used)::

    import jaguar_reid as jr
    cfg = jr.load_config("lite0-cpu", ["train.epochs=3"])
    jr.train(cfg, "data/", "runs/lite0")
    embedder = jr.Embedder.from_runs(["runs/lite0"])
    jr.predict(["runs/lite0"], "data/", "submission.csv")
    catalog = jr.create_catalog("catalog.db", ["runs/lite0"])   # calibrates the run first if needed
    catalog.add("photos/", labels="known.csv")
    catalog.identify(["new_photo.jpg"])
"""

from __future__ import annotations

import importlib
from importlib.metadata import version

__version__ = version("jaguar-reid")  # pyproject.toml holds the one version number

_EXPORTS = {
    "Config": "config", "load_config": "config", "preset_names": "config",
    "train": "training.trainer",
    "Run": "runs",
    "Embedder": "inference.embedder",
    "predict": "tasks.predict",
    "score_submission": "evaluation.scoring",
    "Evaluation": "evaluation.evaluate", "evaluate_embeddings": "evaluation.evaluate", "ablation": "evaluation.evaluate",
    "evaluate_embedder": "tasks.evaluate", "evaluate_run": "tasks.evaluate", "calibrate_run": "tasks.calibrate",
    "create_catalog": "tasks.catalogue", "open_set_data": "tasks.calibrate",
    "Catalog": "catalog", "Identification": "catalog", "EmbeddingIndex": "catalog",
    "OpenSetCalibration": "evaluation.open_set", "calibrate_open_set": "evaluation.open_set",
    "export_onnx": "inference.onnx",
    "identity_balanced_map": "evaluation.metrics", "retrieval_map": "evaluation.metrics",
    "retrieval_top1": "evaluation.metrics", "pair_auc": "evaluation.metrics", "pair_ap": "evaluation.metrics",
    "compute_metrics": "evaluation.metrics", "cosine_similarity": "postprocess",
    "l2_normalize": "postprocess", "flip_tta": "postprocess", "average_query_expansion": "postprocess",
    "k_reciprocal_rerank": "postprocess", "euclidean_distance": "postprocess", "blend": "postprocess",
    "score_transform": "postprocess", "postprocess_similarity": "postprocess", "postprocess_steps": "postprocess",
    "make_demo_data": "data.synthetic", "load_competition": "data.competition",
    "UserError": "errors", "ConfigError": "errors", "DataError": "errors", "WeightsError": "errors",
    "RunFolderError": "errors", "DeviceError": "errors", "CatalogError": "errors",
}
# score is the leaderboard scorer under the name the CLI uses.
_ALIASES = {"score": ("evaluation.scoring", "score_submission")}

__all__ = sorted([*_EXPORTS, *_ALIASES, "__version__"])


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _ALIASES:
        module, attribute = _ALIASES[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    else:
        raise AttributeError(f"module 'jaguar_reid' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
