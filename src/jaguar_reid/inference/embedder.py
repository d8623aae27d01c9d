"""``Embedder``: trained runs as one object from images to embeddings.

It owns the model(s), their preprocessing (input size, alpha policy; the model normalises),
the precision and flip TTA, and caches embeddings of image files in each run folder.

>>> embedder = Embedder.from_runs(["runs/lite0"])                 # doctest: +SKIP
>>> vectors = embedder.embed(["a.png", "b.png"])                 # doctest: +SKIP
>>> float(vectors[0] @ vectors[1])                               # cosine similarity  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..config import DEFAULT_BACKEND, check_backend
from ..data.dataset import load_pixels, pil_to_pixels
from ..devices import resolve_device
from ..postprocess import flip_tta as merge_mirrored
from ..postprocess import l2_normalize
from ..runs import Run, as_runs, ensemble_fingerprint
from .embed import embed_images


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects: a square input of ``image_size`` pixels, alpha handled by ``alpha``."""

    image_size: int
    alpha: str


class _Images(Dataset):
    """Paths, PIL images or a float tensor (N, 3, H, W) in [0, 1], as model inputs of one size."""

    def __init__(self, images, preprocessing: Preprocessing):
        self.images, self.preprocessing = images, preprocessing

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        item, size = self.images[index], self.preprocessing.image_size
        if isinstance(item, torch.Tensor):
            pixels = item.float()
            if pixels.shape[-2:] != (size, size):
                pixels = torch.nn.functional.interpolate(pixels[None], size=(size, size), mode="bicubic",
                                                         align_corners=False, antialias=True)[0].clamp(0, 1)
            return pixels, -1
        if isinstance(item, Image.Image):
            return pil_to_pixels(item, size, self.preprocessing.alpha).float().div_(255.0), -1
        return load_pixels(Path(item), size, self.preprocessing.alpha).float().div_(255.0), -1


class _Member:
    """One single-seed run: its model (loaded on first use), preprocessing and cache."""

    def __init__(self, run: Run, device: torch.device, checkpoint: str, backend: str):
        self.run, self.device, self.checkpoint, self.backend = run, device, checkpoint, backend
        cfg = run.config
        self.preprocessing = Preprocessing(cfg.data.image_size, cfg.data.alpha)
        self.precision, self.channels_last, self.batch_size = cfg.train.precision, cfg.train.channels_last, cfg.train.eval_batch_size
        self._model = None

    @cached_property
    def dim(self) -> int:
        """Embedding size of the run's model (read from its config and weights, without embedding)."""
        model = self._model if isinstance(self._model, torch.nn.Module) and hasattr(self._model, "embedding_dim") \
            else self.run.load_model(self.checkpoint)
        return int(model.embedding_dim)

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None and self.backend == "onnx":
            from .onnx import run_onnx_model

            try:
                self._model = run_onnx_model(self.run)
            except Exception as error:  # an architecture the exporter cannot take: PyTorch still can
                warnings.warn(f"{self.run.path}: ONNX export failed ({type(error).__name__}: {error}); embedding with PyTorch")
                self.backend = "torch"
        if self._model is None:
            self._model = self.run.load_model(self.checkpoint).to(self.device)
            if self.channels_last:
                self._model.to(memory_format=torch.channels_last)
        return self._model

    def cache_key(self, paths: list[Path], flip: bool) -> str:
        digest = hashlib.sha1()
        weights = self.run.weights(self.checkpoint).stat()
        digest.update(f"{weights.st_size}:{weights.st_mtime_ns}:{self.preprocessing}:{flip}".encode())
        for path in paths:
            stat = path.stat()
            digest.update(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:20]

    def embed(self, images, flip: bool, batch_size: int | None, num_workers: int, cache: bool) -> np.ndarray:
        paths = [Path(p) for p in images] if _all_paths(images) else None
        key = self.cache_key(paths, flip) if cache and paths is not None else None
        if key is not None and (cached := self.run.cached_embeddings(key)) is not None:
            return cached
        label = f"embedding{' mirrored' if flip else ''} {self.run.path.name}"
        onnx = self.backend == "onnx"
        embeddings = embed_images(self.model, _Images(images, self.preprocessing), batch_size or self.batch_size,
                                  self.device, "fp32" if onnx else self.precision, flip=flip, num_workers=num_workers,
                                  channels_last=self.channels_last and not onnx, progress=label)
        if key is not None:
            self.run.save_embeddings(key, embeddings)
        return embeddings


def _all_paths(images) -> bool:
    return not isinstance(images, torch.Tensor) and all(isinstance(i, (str, Path)) for i in images)


class Embedder:
    """Embeds images with one or more trained runs (every seed of a multi-seed run is a member).

    ``embed`` returns L2-normalised vectors whose dot product is the mean of the members' cosine
    similarities (each member's normalised embedding scaled by 1/sqrt(members), concatenated).
    Flip TTA (per member: the mean of the normalised embeddings of an image and its mirror,
    renormalised) follows the first run's ``postprocess.flip_tta`` unless ``flip_tta`` is given.
    Embeddings of image files are cached in each run folder. ``backend="onnx"`` runs the models
    with onnxruntime on the CPU (exported once per run; best weights only; about 5x faster than
    PyTorch eager for lite0 on two cores); ``"auto"`` (the default) does so when the device is the
    CPU and the checkpoint is the best one. ``engine=`` is the old name of ``backend=``.
    """

    def __init__(self, runs: list[Run], device: str | torch.device = "auto", flip_tta: bool | None = None,
                 checkpoint: str = "best", batch_size: int | None = None, num_workers: int = 0, cache: bool = True,
                 backend: str = DEFAULT_BACKEND, engine: str | None = None):
        if not runs:
            raise ValueError("an Embedder needs at least one run")
        backend = check_backend(_renamed_backend(backend, engine))
        if backend == "onnx":
            device = "cpu"
        self.runs = runs
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        if backend == "auto":
            backend = "onnx" if self.device.type == "cpu" and checkpoint == "best" else "torch"
        if backend == "onnx" and checkpoint != "best":
            raise ValueError("the onnx backend embeds with the best checkpoint only")
        self.members = [_Member(member, self.device, checkpoint, backend) for run in runs for member in run.members]
        self.flip_tta = runs[0].config.postprocess.flip_tta if flip_tta is None else flip_tta
        self.batch_size, self.num_workers, self.cache = batch_size, num_workers, cache

    @classmethod
    def from_runs(cls, runs, device: str | torch.device = "auto", **kwargs) -> Embedder:
        """Build from run folders (paths or ``Run`` objects); see the class for the options."""
        return cls(as_runs(runs), device, **kwargs)

    @property
    def fingerprint(self) -> str:
        """Names the ensemble's weights and configs (16 hex digits; see ``runs.ensemble_fingerprint``)."""
        return ensemble_fingerprint(self.runs)

    @property
    def dim(self) -> int:
        """Size of the vectors ``embed`` returns."""
        return sum(member.dim for member in self.members)

    @property
    def preprocessing(self) -> list[Preprocessing]:
        """What each member expects (input size, alpha policy), in member order."""
        return [member.preprocessing for member in self.members]

    def _member_embeddings(self, member: _Member, images, flip: bool) -> np.ndarray:
        return member.embed(images, flip, self.batch_size, self.num_workers, self.cache)

    def embed_views(self, images, flip_tta: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Ensemble embeddings without and with flip TTA (both L2-normalised), e.g. for an ablation;
        with ``flip_tta=False`` the mirrored images are not embedded and the second is None."""
        raw, tta = [], []
        for member in self.members:
            plain = self._member_embeddings(member, images, flip=False)
            raw.append(l2_normalize(plain))
            if flip_tta:
                tta.append(merge_mirrored(plain, self._member_embeddings(member, images, flip=True)))
        return _combine(raw), _combine(tta) if flip_tta else None

    def embed(self, images, flip_tta: bool | None = None) -> np.ndarray:
        """(N, D) L2-normalised embeddings of image paths, PIL images or a float tensor (N, 3, H, W) in [0, 1]."""
        flip = self.flip_tta if flip_tta is None else flip_tta
        raw, tta = self.embed_views(images, flip)
        return tta if flip else raw


def _renamed_backend(backend: str, engine: str | None) -> str:
    if engine is None:
        return backend
    warnings.warn("Embedder(engine=...) is now Embedder(backend=...)", DeprecationWarning, stacklevel=4)
    return engine


def _combine(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts, axis=1) / np.float32(np.sqrt(len(parts)))
