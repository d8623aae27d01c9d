"""Photos stored by content: ``<store>/<first two hex digits>/<sha256>.<format>``.

The uploaded file name is kept as data only, never used as a path, so two photos named
``IMG_0001.JPG`` from two cameras never collide and the same photo added twice is one file.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import ImageLoadError
from ..files import atomic_path, hash_file

_SUFFIXES = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "TIFF": "tif", "BMP": "bmp", "GIF": "gif"}

# Decompression bombs: refuse photos above this many pixels (a 24-megapixel camera trap frame is 2.4e7).
MAX_PIXELS = 200_000_000


@dataclass(frozen=True)
class PhotoFile:
    """A checked photo: its path, content hash, format suffix, size in pixels, and from its EXIF
    (when the camera wrote them) the time it was taken (ISO 8601) and where ("lat,lon", degrees)."""

    path: Path
    sha256: str
    suffix: str
    width: int
    height: int
    taken_at: str | None = None
    gps: str | None = None

    @property
    def stored_name(self) -> str:
        """Where the photo lives in the store: ``<2 hex digits>/<sha256>.<suffix>``."""
        return f"{self.sha256[:2]}/{self.sha256}.{self.suffix}"


def check_photo(path: str | Path, max_pixels: int = MAX_PIXELS) -> PhotoFile:
    """Decode ``path`` completely (format from the content, not the name); one-line error if it is
    not an image, is truncated or is too large."""
    path, fmt, exif = Path(path), None, None
    if path.is_file() and path.stat().st_size == 0:
        raise ImageLoadError(f"{path}: empty file", "empty file")
    try:
        with Image.open(path) as image:
            fmt, (width, height) = image.format, image.size
            if width * height > max_pixels:
                raise ImageLoadError(f"{path}: {width}x{height} pixels is more than the limit of {max_pixels:,}",
                                     f"too large ({width}x{height} pixels; the limit is {max_pixels:,})")
            image.load()
            exif = image.getexif()
    except ImageLoadError:
        raise
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: file not found", "file not found") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not an image (no image format recognised in its content)", "not an image") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        kind = fmt or _format_by_signature(path)
        reason = f"truncated {kind}" if "truncated" in str(error).lower() else f"damaged {kind} ({error})"
        raise ImageLoadError(f"{path}: cannot read image ({error})", reason) from None
    return PhotoFile(path, hash_file(hashlib.sha256(), path).hexdigest(), _SUFFIXES.get(fmt, (fmt or "img").lower()), width, height,
                     *_exif_time_and_place(exif))


_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG", b"RIFF": "WEBP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


def _format_by_signature(path: Path) -> str:
    """The image format a file's first bytes announce ("image" when none does)."""
    with open(path, "rb") as file:
        head = file.read(4)
    return next((name for magic, name in _SIGNATURES.items() if head.startswith(magic)), "image")


_DATETIME_ORIGINAL, _DATETIME, _EXIF_IFD, _GPS_IFD = 0x9003, 0x0132, 0x8769, 0x8825


def _exif_time_and_place(exif) -> tuple[str | None, str | None]:
    """(taken at, "lat,lon") from EXIF tags, each None when absent or unreadable."""
    if not exif:
        return None, None
    raw = exif.get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
    taken = None
    try:
        taken = datetime.strptime(str(raw).strip("\x00 "), "%Y:%m:%d %H:%M:%S").isoformat() if raw else None
    except ValueError:
        pass
    gps = exif.get_ifd(_GPS_IFD)
    place = None
    try:
        if gps.get(2) and gps.get(4):
            lat, lon = (sum(float(v) / 60 ** i for i, v in enumerate(gps[key])) for key in (2, 4))
            lat, lon = (-lat if gps.get(1) == "S" else lat), (-lon if gps.get(3) == "W" else lon)
            place = f"{lat:.6f},{lon:.6f}"
    except (TypeError, ValueError, ZeroDivisionError):
        pass
    return taken, place


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
