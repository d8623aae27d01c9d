"""Device names checked in one place, and the numeric settings that go with a device.

Nothing here changes process-wide state at import; TF32 is switched on only inside ``tf32``.
"""

from __future__ import annotations

import contextlib
import re

import torch

from .errors import DeviceError

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def available_devices() -> list[str]:
    """Device names usable here: cpu, and cuda / cuda:N / mps when present."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; a clear error otherwise."""
    name = (name or "auto").strip().lower()
    here = ", ".join(["auto", *available_devices()])
    if not _DEVICE.match(name):
        raise DeviceError(f"unknown device {name!r}: use one of {here}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in available_devices() and not (name == "cuda" and torch.cuda.is_available()):
        raise DeviceError(f"device {name!r} is not available on this machine (it has: {here})")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """bf16 autocast for ``bf16`` (and ``auto`` on CUDA); full precision otherwise."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def tf32(device: torch.device, enabled: bool):
    """TF32 matmuls and convolutions on CUDA inside the block only; the previous settings come back after."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
