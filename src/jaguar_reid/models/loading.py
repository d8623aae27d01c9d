"""Loading a trained model: the architecture from its config, then its saved weights (the
pattern of timm's ``create_model(..., checkpoint_path=...)``)."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from ..config import Config
from .reid import ReIDModel, create_reid_model


def load_trained_model(cfg: Config, weights: str | Path) -> ReIDModel:
    """The ``ReIDModel`` of ``cfg`` with the safetensors ``weights`` of a run (eval mode, on the CPU);
    no pretrained weights are fetched, the file holds them all."""
    model = create_reid_model(cfg.model.model_copy(update={"pretrained": "none", "weights": None}),
                              image_size=cfg.data.image_size)
    model.load_state_dict(load_file(str(weights)))
    return model.eval()
