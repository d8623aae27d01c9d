"""Photos stored by content: ``<store>/<first two hex digits>/<sha256>.<format>``.

The uploaded file name is kept as data only, never used as a path, so two photos named
``IMG_0001.JPG`` from two cameras never collide and the same photo added twice is one file.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import ImageLoadError
from ..files import atomic_path, hash_file

_SUFFIXES = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "TIFF": "tif", "BMP": "bmp", "GIF": "gif"}

# Decompression bombs: refuse photos above this many pixels (a 24-megapixel camera trap frame is 2.4e7).
MAX_PIXELS = 200_000_000


@dataclass(frozen=True)
class PhotoFile:
    """A checked photo: its path, content hash, format suffix and size in pixels."""

    path: Path
    sha256: str
    suffix: str
    width: int
    height: int

    @property
    def stored_name(self) -> str:
        """Where the photo lives in the store: ``<2 hex digits>/<sha256>.<suffix>``."""
        return f"{self.sha256[:2]}/{self.sha256}.{self.suffix}"


def check_photo(path: str | Path, max_pixels: int = MAX_PIXELS) -> PhotoFile:
    """Decode ``path`` completely (format from the content, not the name); one-line error if it is
    not an image, is truncated or is too large."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            fmt, (width, height) = image.format, image.size
            if width * height > max_pixels:
                raise ImageLoadError(f"{path}: {width}x{height} pixels is more than the limit of {max_pixels:,}")
            image.load()
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not an image (no image format recognised in its content)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageLoadError(f"{path}: cannot read image ({error})") from None
    return PhotoFile(path, hash_file(hashlib.sha256(), path).hexdigest(), _SUFFIXES.get(fmt, (fmt or "img").lower()), width, height)


class ImageStore:
    """The catalogue's photo folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, stored_name: str) -> Path:
        """The file of a stored photo."""
        return self.root / stored_name

    def put(self, photo: PhotoFile) -> str:
        """Copy the photo in (atomically; a file already there is the same content) and return its stored name."""
        target = self.root / photo.stored_name
        if not target.exists():
            with atomic_path(target) as tmp:
                shutil.copyfile(photo.path, tmp)
        return photo.stored_name
