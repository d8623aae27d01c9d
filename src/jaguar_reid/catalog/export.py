"""Writing the catalogue's identified photos out as a Kaggle-format training set."""

from __future__ import annotations

import json
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
