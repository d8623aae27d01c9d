"""One typed configuration for the whole pipeline; every box of the seed's pipeline is a field.

Presets are TOML files shipped in ``jaguar_reid/presets``; ``load_config`` reads one (by name or
path) and applies ``section.key=value`` overrides, so the command line can switch any box.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, ValidationError

AlphaPolicy = Literal["keep", "black", "gray", "white", "noise"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    image_size: int = 224
    alpha: AlphaPolicy = "keep"
    num_workers: int = 0
    # Cache decoded, resized uint8 images in memory: decoding PNGs dominates small-model epochs.
    cache_images: bool = True
    random_resized_crop_scale: tuple[float, float] = (0.6, 1.0)
    color_jitter: float = 0.2
    random_erasing: float = 0.0
    # Off by default: a jaguar's left and right flanks carry different rosettes, so a mirror
    # image shows a pattern that identity never has.
    hflip: bool = False


class SplitConfig(_Section):
    val_fraction: float = 0.2
    split_seed: int = 314159
    group_column: str | None = None
    metadata_csv: str | None = None


class ModelConfig(_Section):
    backbone: str = "tf_efficientnet_lite0"
    # "hub": timm's own download; "offline": weights shipped by a pip package; "none": random init.
    pretrained: Literal["hub", "offline", "none"] = "offline"
    weights: str | None = None
    pooling: Literal["gem", "avg"] = "gem"
    gem_p: float = 3.0
    embedding_dim: int | None = None
    head: Literal["arcface", "softmax"] = "arcface"
    # "imprint": class weights start at the class-mean embeddings of the training images.
    head_init: Literal["imprint", "random"] = "imprint"
    arcface_scale: float = 30.0
    arcface_margin: float = 0.5
    # Freeze the stem and this many leading stages (timm feature_info order); 0 trains everything.
    freeze_stages: int = 0
    drop_path_rate: float = 0.0


class LossConfig(_Section):
    label_smoothing: float = 0.0
    triplet_weight: float = 0.0
    triplet_margin: float = 0.2


class OptimizerConfig(_Section):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 2e-5
    weight_decay: float = 1e-3
    head_lr_multiplier: float = 1.0
    # None: fused on CUDA, plain elsewhere.
    fused: bool | None = None


class ScheduleConfig(_Section):
    name: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: int = 0


class TrainConfig(_Section):
    epochs: int = 10
    batch_size: int = 32
    grad_accumulation: int = 1
    sampler: Literal["random", "pk"] = "random"
    images_per_identity: int = 4
    seed: int = 42
    device: str = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    channels_last: bool = False
    tf32: bool = True
    compile: bool = False
    # Recompute activations in the backward pass: less memory, so larger micro-batches fit.
    grad_checkpointing: bool = False
    # Train one class per (identity, value of this metadata column), e.g. "flank": an animal's
    # left and right flanks carry different patterns. Validation still scores identities.
    class_column: str | None = None
    selection_metric: Literal[
        "pair_auc", "identity_balanced_map", "retrieval_map", "retrieval_top1", "pair_ap"
    ] = "pair_auc"
    eval_batch_size: int = 64


class PostprocessConfig(_Section):
    flip_tta: bool = True
    query_expansion: bool = True
    aqe_k: int = 3
    aqe_alpha: float = 3.0
    rerank: bool = True
    rerank_k1: int = 20
    rerank_k2: int = 6
    rerank_lambda: float = 0.3
    blend: bool = True
    blend_weight: float = 0.2
    score_transform: Literal["clip", "none", "sigmoid"] = "clip"


class Config(_Section):
    name: str = "custom"
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainConfig = TrainConfig()
    postprocess: PostprocessConfig = PostprocessConfig()

    def to_toml(self) -> str:
        return tomli_w.dumps(self.model_dump(mode="json", exclude_none=True))


class ConfigError(ValueError):
    """A preset, TOML file or override that does not describe a valid configuration."""


def preset_names() -> list[str]:
    folder = resources.files("jaguar_reid") / "presets"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def _read_toml(name_or_path: str) -> tuple[dict, str]:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        text, source = path.read_text(), str(path)
    elif name_or_path in preset_names():
        text = (resources.files("jaguar_reid") / "presets" / f"{name_or_path}.toml").read_text()
        source = f"preset {name_or_path}"
    else:
        raise ConfigError(
            f"unknown config {name_or_path!r}: not a file, and not a preset ({', '.join(preset_names())})"
        )
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: invalid TOML ({error})") from None


def _parse_value(text: str):
    """An override's value as TOML (numbers, booleans, arrays), else as a bare string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected section.key=value")
        *sections, leaf = key.strip().split(".")
        node = raw
        for section in sections:
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {section!r} is not a section")
        node[leaf] = _parse_value(value.strip())
    return raw


def build_config(raw: dict, source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{source}: {where}: {first['msg']}") from None


def load_config(name_or_path: str, overrides: list[str] | None = None) -> Config:
    """Read a preset name or TOML path and apply ``section.key=value`` overrides."""
    raw, source = _read_toml(name_or_path)
    raw = apply_overrides(raw, list(overrides or []))
    return build_config(raw, source)
