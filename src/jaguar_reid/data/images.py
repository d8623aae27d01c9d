"""Image loading for any mode Pillow reads, with a policy for the alpha channel of cut-outs."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..config import AlphaPolicy
from ..errors import ImageLoadError

_BACKGROUNDS = {"black": (0, 0, 0), "gray": (128, 128, 128), "white": (255, 255, 255)}


def _to_rgba_or_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit integer) grayscale: keep the top 8 bits of the stored range.
        array = np.asarray(image, dtype=np.int64)
        peak = 65535 if image.mode.startswith("I;16") or array.max() > 255 else 255
        array = np.clip(array * 255 // peak, 0, 255).astype(np.uint8)
        return Image.fromarray(array, mode="L").convert("RGB")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        span = max(float(array.max() - array.min()), 1e-12)
        return Image.fromarray(((array - array.min()) / span * 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "RGB"):
        return image
    if image.mode in ("LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    return image.convert("RGB")


def apply_alpha(image: Image.Image, policy: AlphaPolicy, seed: int = 0) -> Image.Image:
    """Drop alpha (``keep`` the stored RGB) or composite onto a plain or noise background."""
    if image.mode != "RGBA":
        return image.convert("RGB")
    if policy == "keep":
        return image.convert("RGB")
    if policy == "noise":
        rng = np.random.default_rng(seed)
        noise = rng.integers(0, 256, size=(image.height, image.width, 3), dtype=np.uint8)
        background = Image.fromarray(noise, mode="RGB")
    else:
        background = Image.new("RGB", image.size, _BACKGROUNDS[policy])
    background.paste(image, mask=image.getchannel("A"))
    return background


def load_image(path: str | Path, alpha: AlphaPolicy = "keep") -> Image.Image:
    """Load an image as RGB: EXIF orientation applied, any mode converted, alpha per ``alpha``.

    The format is read from the content, so a JPEG saved under a ``.png`` name loads. The noise
    background is seeded by the file name, so an image always composites the same way.
    """
    path = Path(path)
    try:
        with Image.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(f"{path}: cannot read image ({error})") from None
    return prepare_image(image, alpha, seed=zlib.crc32(path.name.encode()))


def prepare_image(image: Image.Image, alpha: AlphaPolicy = "keep", seed: int = 0) -> Image.Image:
    """An opened image of any mode as RGB, alpha handled per ``alpha`` (noise seeded by ``seed``)."""
    return apply_alpha(_to_rgba_or_rgb(image), alpha, seed=seed)
