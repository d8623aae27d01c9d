"""The re-identification model: timm backbone (features only) -> pooling -> optional neck."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from ..config import ModelConfig
from .weights import WeightsError, offline_package_available, offline_state_dict


class GeM(nn.Module):
    """Generalised mean pooling with a learnable exponent p (Radenović et al., 2018)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        """Pool a feature map over ``dims`` with exponent p."""
        p = self.p.float()
        return x.float().clamp(min=self.eps).pow(p).mean(dim=dims).pow(1.0 / p)


class AveragePool(nn.Module):
    """Average pooling over the spatial dimensions."""
    def forward(self, x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        """Mean of a feature map over ``dims``."""
        return x.float().mean(dim=dims)


def _hub_hint(name: str) -> str:
    return (
        f"no weights for {name!r}: pass --weights PATH (a .safetensors or .pth file), "
        "use model.pretrained=hub with internet access, or model.pretrained=none for random init"
    )


def create_backbone(cfg: ModelConfig, weights: str | Path | None = None, image_size: int | None = None) -> nn.Module:
    """A timm model without classifier or pooling; weights per ``cfg.pretrained`` or a file.

    Models with a fixed input size (vision transformers) are built for ``image_size``; timm
    resamples their position embeddings when loading weights made for another size. Never
    silently random: pretrained weights that cannot be had raise ``WeightsError``.
    """
    kwargs = {"num_classes": 0, "global_pool": ""}
    pretrained_cfg = timm.models.get_pretrained_cfg(cfg.backbone)
    if image_size and pretrained_cfg is not None and pretrained_cfg.fixed_input_size:
        kwargs["img_size"] = image_size
    if cfg.drop_path_rate > 0:
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    weights = weights or cfg.weights
    try:
        if weights is not None:
            if not Path(weights).is_file():
                raise WeightsError(f"{weights}: weights file not found")
            return timm.create_model(
                cfg.backbone, pretrained=True, pretrained_cfg_overlay={"file": str(weights)}, **kwargs
            )
        if cfg.pretrained == "none":
            return timm.create_model(cfg.backbone, pretrained=False, **kwargs)
        if cfg.pretrained == "hub":
            overlay = {"hf_hub_id": cfg.hub_id, "source": "hf-hub"} if cfg.hub_id else None
            return timm.create_model(cfg.backbone, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    except WeightsError:
        raise
    except RuntimeError as error:
        if "size mismatch" in str(error) or "Missing key" in str(error) or "Unexpected key" in str(error):
            raise WeightsError(f"weights do not fit {cfg.backbone!r}: {str(error).splitlines()[0]}") from None
        raise WeightsError(f"{_hub_hint(cfg.backbone)} ({type(error).__name__}: {str(error).splitlines()[0]})") from None
    except Exception as error:  # hub errors come in many types (network, HTTP, offline mode)
        if isinstance(error, (KeyboardInterrupt, MemoryError)):
            raise
        raise WeightsError(f"{_hub_hint(cfg.backbone)} ({type(error).__name__}: {str(error).splitlines()[0]})") from None

    if not offline_package_available(cfg.backbone):
        raise WeightsError(_hub_hint(cfg.backbone) + " (model.pretrained=offline covers tf_efficientnet_lite0/1/2 only)")
    model = timm.create_model(cfg.backbone, pretrained=False, **{**kwargs, "num_classes": 1000})
    model.load_state_dict(offline_state_dict(cfg.backbone, [len(stage) for stage in model.blocks]), strict=True)
    model.reset_classifier(0, "")
    return model


def _freeze_leading_stages(backbone: nn.Module, n_stages: int) -> list[nn.Module]:
    """Freeze the stem and the first ``n_stages`` stages (timm's ``feature_info`` order).

    timm registers modules in forward order, so everything up to the end of that stage's subtree
    is upstream of it. Returns the frozen leaf modules, which ``ReIDModel.train`` keeps in eval
    mode so that their BatchNorm statistics stay fixed too.
    """
    if n_stages <= 0:
        return []
    stages = [info["module"] for info in backbone.feature_info]
    if n_stages > len(stages):
        raise ValueError(f"freeze_stages={n_stages} but {type(backbone).__name__} has {len(stages)} stages")
    last = stages[n_stages - 1]
    modules = list(backbone.named_modules())
    end = next(i for i, (name, _) in enumerate(modules) if name == last) + 1
    while end < len(modules) and modules[end][0].startswith(last + "."):
        end += 1
    frozen = [module for _, module in modules[1:end]]
    for module in frozen:
        for parameter in module.parameters(recurse=False):
            parameter.requires_grad_(False)
    return [module for module in frozen if not list(module.children())]


def create_neck(cfg: ModelConfig, feature_dim: int) -> tuple[nn.Module, int]:
    """The layer between pooling and embedding, and the embedding size.

    ``linear`` starts as the identity when square, so the untrained model embeds exactly as the
    pretrained backbone does and training moves away from it only as far as it helps.
    """
    kind = ("linear_bn" if cfg.embedding_dim else "none") if cfg.neck == "auto" else cfg.neck
    dim = cfg.embedding_dim or feature_dim
    if kind == "none":
        if cfg.embedding_dim and cfg.embedding_dim != feature_dim:
            raise ValueError(f"model.neck=none keeps the backbone's {feature_dim} features, but embedding_dim={cfg.embedding_dim}")
        return nn.Identity(), feature_dim
    linear = nn.Linear(feature_dim, dim, bias=False)
    if kind == "linear":
        if dim == feature_dim:
            nn.init.eye_(linear.weight)
        return linear, dim
    return nn.Sequential(linear, nn.BatchNorm1d(dim)), dim


class ReIDModel(nn.Module):
    """Images (float in [0, 1], NCHW) -> embeddings (N, D), not normalised.

    Input normalisation (the backbone's mean/std) happens inside, so data pipelines deal only in
    pixels. Frozen stages keep their BatchNorm statistics in training mode too.
    """

    def __init__(self, backbone: nn.Module, cfg: ModelConfig):
        super().__init__()
        self.backbone = backbone
        self.pool = GeM(cfg.gem_p) if cfg.pooling == "gem" else AveragePool()
        self.neck, self.embedding_dim = create_neck(cfg, backbone.num_features)
        data_cfg = timm.data.resolve_data_config({}, model=backbone)
        self.register_buffer("mean", torch.tensor(cfg.mean or data_cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std or data_cfg["std"]).view(1, 3, 1, 1), persistent=False)
        self.num_prefix_tokens = getattr(backbone, "num_prefix_tokens", 0)
        # Swin and other timm models give (N, H, W, C) feature maps.
        self.spatial_dims = (1, 2) if getattr(backbone, "output_fmt", "NCHW") == "NHWC" else (2, 3)
        self._frozen = _freeze_leading_stages(backbone, cfg.freeze_stages)

    def train(self, mode: bool = True) -> ReIDModel:
        """Train mode, except a frozen backbone stays in eval mode (its batch-norm statistics do not move)."""
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def freeze_backbone(self) -> None:
        """Freeze backbone and pooling entirely (their modules stay in eval mode): only the neck trains."""
        for module in (self.backbone, self.pool):
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        self._frozen = [m for m in [*self.backbone.modules(), self.pool] if not list(m.children())]

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features pooled to (N, feature_dim): the neck's input."""
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        features = self.backbone.forward_features(x)
        if features.ndim == 4:  # a feature map: (N, C, H, W), or (N, H, W, C)
            return self.pool(features, self.spatial_dims)
        return self.pool(features[:, self.num_prefix_tokens :], (1,))  # vision transformer: pool the patch tokens

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W), normalised inside, to embeddings (N, embedding_dim), not L2-normalised."""
        return self.neck(self.pooled(images))


def create_reid_model(cfg: ModelConfig, weights: str | Path | None = None, image_size: int | None = None) -> ReIDModel:
    """A ``ReIDModel`` for ``cfg``: the backbone with its pretrained weights (hub, offline package, or ``weights`` file)."""
    return ReIDModel(create_backbone(cfg, weights, image_size), cfg)
