"""Torch datasets, augmentations and epoch-seeded batch samplers (P x K or random, rank-sharded)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset, Sampler
from torchvision.transforms import v2

from ..config import AlphaPolicy, DataConfig
from .images import load_image, prepare_image


def load_pixels(path: Path, image_size: int, alpha: AlphaPolicy) -> torch.Tensor:
    """An image file as a (3, S, S) uint8 tensor, squashed to the square input size."""
    return _to_pixels(load_image(path, alpha), image_size)


def pil_to_pixels(image: Image.Image, image_size: int, alpha: AlphaPolicy) -> torch.Tensor:
    """An opened image (any mode) as a (3, S, S) uint8 tensor, like ``load_pixels``."""
    return _to_pixels(prepare_image(ImageOps.exif_transpose(image), alpha), image_size)


def _to_pixels(image: Image.Image, image_size: int) -> torch.Tensor:
    image = image.resize((image_size, image_size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


class ImageSet(Dataset):
    """Images as uint8 tensors (optionally cached in memory), with an optional augmentation."""

    def __init__(self, paths, labels=None, image_size: int = 224, alpha: AlphaPolicy = "keep",
                 transform=None, cache: bool = True):
        self.paths = [Path(p) for p in paths]
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.image_size = image_size
        self.alpha = alpha
        self.transform = transform
        self._cache: dict[int, torch.Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.paths)

    def with_transform(self, transform) -> ImageSet:
        """The same images, sharing the pixel cache, under another transform."""
        other = copy.copy(self)
        other.transform = transform
        return other

    def subset(self, indices) -> ImageSet:
        """The images at ``indices`` (labels with them), under the same transform; a cache of its own."""
        labels = None if self.labels is None else self.labels[list(indices)]
        return ImageSet([self.paths[i] for i in indices], labels, self.image_size, self.alpha, self.transform,
                        self._cache is not None)

    def pixels(self, index: int) -> torch.Tensor:
        """The uint8 pixels (3, H, W) of image ``index`` at the set's size, before any transform."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        pixels = load_pixels(self.paths[index], self.image_size, self.alpha)
        if self._cache is not None:
            self._cache[index] = pixels
        return pixels

    def __getitem__(self, index: int):
        pixels = self.pixels(index)
        image = self.transform(pixels) if self.transform else pixels.float().div_(255.0)
        label = -1 if self.labels is None else self.labels[index]
        return image, label


def train_transform(cfg: DataConfig) -> v2.Compose:
    """Augmentations on uint8 tensors, ending as float in [0, 1] (the model normalises)."""
    steps = [v2.RandomResizedCrop(cfg.image_size, scale=tuple(cfg.random_resized_crop_scale), antialias=True)]
    if cfg.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if cfg.color_jitter > 0:
        j = cfg.color_jitter
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if cfg.random_erasing > 0:
        steps.append(v2.RandomErasing(p=cfg.random_erasing, value=0.5))
    return v2.Compose(steps)


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of indices, reseeded from (seed, epoch) so that a resumed run sees the same batches.

    ``pk``: each batch holds P identities x K images (``images_per_identity``), drawn without
    replacement where an identity has enough images. ``pk_groups``: the same, with each
    identity's K images spread over as many of its ``groups`` (sightings) as it has, so that
    positives in a batch come from different sightings. ``random``: a shuffled pass over all images.
    With ``world_size`` > 1 every global batch is split across ranks (for P x K, by whole
    identities), so N ranks see exactly the batches one process would.

    Written by hand rather than using pytorch-metric-learning's ``MPerClassSampler`` because that
    draws from NumPy's global generator: it cannot be reseeded per epoch (exact resume) or sharded.
    """

    def __init__(self, labels, batch_size: int, mode: str = "random", images_per_identity: int = 4,
                 seed: int = 0, rank: int = 0, world_size: int = 1, groups=None):
        self.labels = np.asarray(labels)
        if mode == "pk_groups" and groups is None:
            raise ValueError("train.sampler=pk_groups needs groups (split.group_column and split.metadata_csv)")
        self.groups = None if groups is None else np.asarray(groups)
        self.batch_size, self.mode, self.k = batch_size, mode, images_per_identity
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} ranks")
        if mode in ("pk", "pk_groups"):
            if batch_size % images_per_identity:
                raise ValueError(f"P x K: batch size {batch_size} is not a multiple of K={images_per_identity}")
            if (batch_size // images_per_identity) % world_size:
                raise ValueError(f"P x K: P={batch_size // images_per_identity} identities do not split over {world_size} ranks")
        self.by_identity = [np.flatnonzero(self.labels == c) for c in np.unique(self.labels)]

    def set_epoch(self, epoch: int) -> None:
        """Draw the next epoch's batches (seeded by the training seed and the epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.labels)
        return max(1, n // self.batch_size) if self.mode != "random" or n >= self.batch_size else 1

    def _global_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.mode == "random":
            order = rng.permutation(len(self.labels))
            return [order[i * self.batch_size : (i + 1) * self.batch_size] for i in range(len(self))]
        p = min(self.batch_size // self.k, len(self.by_identity))
        batches = []
        for _ in range(len(self)):
            identities = rng.choice(len(self.by_identity), size=p, replace=False)
            batches.append(np.concatenate([self._draw(rng, self.by_identity[c]) for c in identities]))
        return batches

    def _draw(self, rng: np.random.Generator, members: np.ndarray) -> np.ndarray:
        """K images of one identity; for ``pk_groups``, one per group in turn (round robin over its groups)."""
        if self.mode != "pk_groups":
            return rng.choice(members, size=self.k, replace=len(members) < self.k)
        order = rng.permutation(members)
        seen: dict = {}
        turn = np.empty(len(order), dtype=np.int64)
        for i, group in enumerate(self.groups[order]):
            turn[i] = seen.get(group, 0)
            seen[group] = turn[i] + 1
        chosen = order[np.argsort(turn, kind="stable")][: self.k]
        if len(chosen) < self.k:
            chosen = np.concatenate([chosen, rng.choice(members, size=self.k - len(chosen))])
        return chosen

    def __iter__(self):
        for batch in self._global_batches():
            shard = np.array_split(batch, self.world_size)[self.rank]
            yield shard.tolist()
