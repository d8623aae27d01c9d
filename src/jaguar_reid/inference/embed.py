"""Batched embedding of an image set, with an optional mirror pass for flip TTA."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..devices import autocast


@torch.no_grad()
def embed_images(model: torch.nn.Module, images, batch_size: int = 64, device: torch.device | None = None,
                 precision: str = "auto", flip: bool = False, num_workers: int = 0, channels_last: bool = False,
                 progress: str | None = "embedding") -> np.ndarray:
    """Embeddings (N, D) float32, not normalised, of a dataset of (image, label) items; ``flip``
    embeds the mirrored images instead."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    outputs = []
    for batch, _ in tqdm(loader, desc=progress, unit="batch", leave=False, **({"disable": True} if progress is None else {})):
        batch = batch.to(device, non_blocking=True)
        if flip:
            batch = torch.flip(batch, dims=[3])
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            outputs.append(model(batch).float().cpu())
    model.train(was_training)
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0), dtype=np.float32)
