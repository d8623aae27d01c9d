"""Photos on their way into the catalogue: listing a folder, reading labels and metadata into
image rows, and what a photo is embedded from (its file, or its crop)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..data.tables import read_labels
from ..errors import CatalogError, DataError, ImageLoadError
from .database import now
from .schema import Status, images
from .store import ImageStore, PhotoFile, check_photo

_METADATA_COLUMNS = {"side": ("side", "flank"), "date": ("date", "datetime", "timestamp"),
                     "location": ("location", "site", "station")}
_CROP = ("crop_left", "crop_top", "crop_right", "crop_bottom")
MIN_CROP_PIXELS = 16


@dataclass
class AddReport:
    """What ``Catalog.add`` did."""

    added: int = 0
    labelled: int = 0
    queued: int = 0
    new_individuals: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (photo, the catalogue photo it repeats)
    skipped: list[dict] = field(default_factory=list)  # {"file", "reason"}: unreadable files and duplicates
    encounters: int = 0  # encounters among the added photos (a photo without one counts as its own)
    notes: list[str] = field(default_factory=list)


def list_photos(photos) -> tuple[list[str], list[Path]]:
    """Names (relative to the folder) and paths of a folder's files (hidden ones skipped), or of given paths."""
    if isinstance(photos, (str, Path)) and Path(photos).is_dir():
        root = Path(photos)
        paths = sorted(p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
        if not paths:
            raise DataError(f"{root}: no photos in this folder")
        return [p.relative_to(root).as_posix() for p in paths], paths
    paths = [Path(p) for p in ([photos] if isinstance(photos, (str, Path)) else photos)]
    for path in paths:
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
    if not paths:
        raise DataError("no photos given")
    return [p.name for p in paths], paths


def check_photos(names: list[str], paths: list[Path], strict: bool = False) -> tuple[list[tuple[str, PhotoFile]], list[dict]]:
    """Decode every file: (name, ``PhotoFile``) of the readable photos, and ``{"file", "reason"}`` of
    each file skipped ("empty file", "not an image", "truncated JPEG", ...). A memory card holds
    notes, thumbnails and broken files beside the photos: they are skipped, not fatal. With
    ``strict`` the first unreadable file is a one-line error instead."""
    from tqdm import tqdm

    checked, skipped = [], []
    for name, path in zip(names, tqdm(paths, desc="checking photos", unit="photo", leave=False)):
        try:
            checked.append((name, check_photo(path)))
        except ImageLoadError as error:
            if strict:
                raise
            skipped.append({"file": name, "reason": error.reason})
    return checked, skipped


def nothing_readable(source, skipped: list[dict]) -> DataError:
    """The error for an import or identify where every file was skipped, naming them."""
    listed = "; ".join(f"{s['file']} ({s['reason']})" for s in skipped[:5])
    more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    return DataError(f"{source}: no readable photo; skipped {listed}{more}")


def photo_condition(photo: str | Path):
    """Which catalogue photo ``photo`` names, as a SQL condition: a file (by its content), a sha256
    (or a prefix of 8+ hex digits) or ``#id``."""
    text = str(photo)
    if Path(text).is_file():
        return images.c.sha256 == check_photo(text).sha256
    if text.startswith("#") and text[1:].isdigit():
        return images.c.id == int(text[1:])
    if len(text) >= 8 and all(c in "0123456789abcdef" for c in text.lower()):
        return images.c.sha256.startswith(text.lower())
    raise CatalogError(f"{photo}: no such file, and not a photo's sha256 or #id")


def read_label_map(labels: str | Path, names: list[str], folder) -> dict[str, str]:
    """filename -> individual from a labels CSV whose every file is among ``names``."""
    table = read_labels(labels)
    present = set(names)
    for row, filename in enumerate(table["filename"]):
        if filename not in present:
            raise DataError(f"{labels} line {row + 2}: names {filename!r}, which is not in {folder}")
    return dict(zip(table["filename"], table["ground_truth"]))


def image_row(name: str, photo: PhotoFile, stored_name: str, individual_id: int | None, meta: dict, who: str,
              encounter: str | None = None) -> dict:
    """The ``images`` row of a checked photo: side/date/location from its metadata (else date and
    place from its EXIF), other columns in ``extra``, and its encounter (None: its own)."""
    known = {key: next((meta[c] for c in columns if meta.get(c)), None) for key, columns in _METADATA_COLUMNS.items()}
    taken = {c for columns in _METADATA_COLUMNS.values() for c in columns}
    extra = {k: v for k, v in meta.items() if k not in taken and k != "filename" and v != ""}
    known["date"] = known["date"] or photo.taken_at  # a metadata CSV overrides the camera's EXIF
    known["location"] = known["location"] or photo.gps
    return {"sha256": photo.sha256, "original_name": name, "stored_path": stored_name, "width": photo.width,
            "height": photo.height, "individual_id": individual_id,
            "status": str(Status.KNOWN if individual_id else Status.QUEUED),
            **known, "extra": json.dumps(extra), "added_by": who, "added_at": now(), "encounter": encounter}


def crop_box(image: dict, box: tuple[float, float, float, float] | None) -> dict:
    """The crop columns for ``box`` (left, top, right, bottom, pixels of the upright photo), checked
    to lie inside the photo; all None for no box."""
    if box is None:
        return dict.fromkeys(_CROP)
    left, top, right, bottom = (float(v) for v in box)
    if not (0 <= left < right <= image["width"] and 0 <= top < bottom <= image["height"]):
        raise CatalogError(f"{image['original_name']}: crop box {box} is not inside the "
                           f"{image['width']}x{image['height']} photo")
    if right - left < MIN_CROP_PIXELS or bottom - top < MIN_CROP_PIXELS:
        raise CatalogError(f"{image['original_name']}: crop box {box} is smaller than {MIN_CROP_PIXELS} pixels")
    return dict(zip(_CROP, (left, top, right, bottom)))


def model_input(store: ImageStore, image: dict):
    """What a photo is embedded from: its stored file, or the crop of it when a crop box is set."""
    path = store.path(image["stored_path"])
    if image["crop_left"] is None:
        return path
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        opened.load()
        upright = ImageOps.exif_transpose(opened)  # the box is in the photo as displayed
    return upright.crop((image["crop_left"], image["crop_top"], image["crop_right"], image["crop_bottom"]))
