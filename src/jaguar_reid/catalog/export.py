"""Writing the catalogue's identified photos out: a Kaggle-format training set, or a folder per individual for people."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from ..files import atomic_path
from .store import ImageStore


def export_kaggle(rows: list[dict], store: ImageStore, out: Path) -> Path:
    """OUT/train.csv (filename,ground_truth), OUT/train/<photo> and OUT/metadata.csv (filename,
    original name, side, date, location, extras) from identified photo rows; returns train.csv."""
    (out / "train").mkdir(parents=True, exist_ok=True)
    table, meta = [], []
    for row in rows:
        filename = Path(row["stored_path"]).name
        target = out / "train" / filename
        if not target.exists():
            with atomic_path(target) as tmp:
                tmp.write_bytes(store.path(row["stored_path"]).read_bytes())
        table.append({"filename": filename, "ground_truth": row["individual"]})
        meta.append({"filename": filename, "original_name": row["original_name"], "side": row["side"] or "",
                     "date": row["date"] or "", "location": row["location"] or "", **json.loads(row["extra"])})
    for name, frame in (("metadata.csv", pd.DataFrame(meta)), ("train.csv", pd.DataFrame(table))):
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=False)
    return out / "train.csv"


def export_folders(rows: list[dict], store: ImageStore, out: Path, decided: dict[int, tuple[str, str]]) -> Path:
    """OUT/<individual>/<photo> for every identified photo, OUT/individuals.csv (name, photos,
    encounters, first and last date, locations) and OUT/photos.csv (file, individual, encounter,
    side, date, location, decided by and when); ``decided``: image id -> (who, at) of its latest
    decision (photos labelled at import: who added them, when). Returns OUT/individuals.csv."""
    photos = []
    for row in rows:
        folder = _safe_folder(row["individual"])
        name = f"{row['sha256'][:12]}_{Path(row['original_name']).name}"  # two cameras' IMG_0001.JPG never collide
        target = out / folder / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                shutil.copyfile(store.path(row["stored_path"]), tmp)
        who, at = decided.get(row["id"], (row["added_by"], row["added_at"]))
        photos.append({"file": f"{folder}/{name}", "individual": row["individual"], "encounter": row.get("encounter") or "",
                       "side": row["side"] or "", "date": row["date"] or "", "location": row["location"] or "",
                       "decided_by": who, "decided_at": at})
    table = pd.DataFrame(photos)
    individuals = [{"name": name, "photos": len(group),
                    "encounters": group.loc[group["encounter"] != "", "encounter"].nunique() + int((group["encounter"] == "").sum()),
                    "first_date": min((d for d in group["date"] if d), default=""),
                    "last_date": max((d for d in group["date"] if d), default=""),
                    "locations": "; ".join(sorted({loc for loc in group["location"] if loc}))}
                   for name, group in table.groupby("individual", sort=True)]
    for filename, frame in (("photos.csv", table), ("individuals.csv", pd.DataFrame(individuals))):
        with atomic_path(out / filename) as tmp:
            frame.to_csv(tmp, index=False)
    return out / "individuals.csv"


def _safe_folder(name: str) -> str:
    """An individual's name as one folder name (no separators, not hidden)."""
    cleaned = "".join("_" if c in '/\\:*?"<>|' or not c.isprintable() else c for c in name).strip().lstrip(".")
    return cleaned or "unnamed"
