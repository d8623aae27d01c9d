"""Batched embedding of an image set, with an optional mirror pass for flip TTA."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.dataset import ImageSet


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA for ``bf16``/``auto``; full precision otherwise (and on CPU for auto)."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def embed_images(model: torch.nn.Module, images: ImageSet, batch_size: int = 64, device: torch.device | None = None,
                 precision: str = "auto", flip: bool = False, num_workers: int = 0, channels_last: bool = False,
                 progress: str | None = "embedding") -> np.ndarray:
    """Embeddings (N, D) float32, not normalised; ``flip`` embeds the mirrored images instead."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    outputs = []
    for batch, _ in tqdm(loader, desc=progress, unit="batch", disable=progress is None, leave=False):
        batch = batch.to(device, non_blocking=True)
        if flip:
            batch = torch.flip(batch, dims=[3])
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            outputs.append(model(batch).float().cpu())
    model.train(was_training)
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0), dtype=np.float32)
