"""Atomic file writes: every output is written to a temporary file beside it, then renamed.

A crash or Ctrl-C mid-write leaves the old file (or none), never half of a new one. Also the
streamed file hash that run fingerprints and the catalogue's photo store share.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    The temporary name keeps the suffix (``x.tmp.npy``) so that writers which append one (NumPy)
    or check it (pandas) behave. Files are world-readable (0644 under the usual umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text to ``path`` atomically (a temporary file, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: str | Path, data) -> Path:
    """Write JSON to ``path`` atomically (a temporary file, then rename)."""
    return atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def hash_file(digest, path: str | Path):
    """Feed a file's bytes into a hashlib ``digest`` in 1 MiB blocks (checkpoints can be large); returns it."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest
