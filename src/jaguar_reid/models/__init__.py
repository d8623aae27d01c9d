"""Backbone factory (timm + offline weights), pooling and the re-identification model."""

from .reid import GeM, ReIDModel, create_backbone, create_reid_model
from .weights import WeightsError, lukemelas_to_timm

__all__ = ["GeM", "ReIDModel", "WeightsError", "create_backbone", "create_reid_model", "lukemelas_to_timm"]
