"""Kaggle-format tables: train.csv, test.csv, answer files and submissions, validated.

Every problem raises ``DataError`` with one line naming the file, the line (1-based, header is
line 1) and what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..errors import DataError

TRAIN_COLUMNS = ("filename", "ground_truth")
TEST_COLUMNS = ("row_id", "query_image", "gallery_image")
SUBMISSION_COLUMNS = ("row_id", "similarity")
_MISSING_SHOWN = 3


def _line(index: int) -> int:
    """File line of a 0-based data row (the header is line 1)."""
    return int(index) + 2


def _check_columns(path: Path, found: list[str], expected: tuple[str, ...]) -> None:
    missing = [c for c in expected if c not in found]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(expected)}, "
            f"found {','.join(found) or 'nothing'}"
        )


def _read_header(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, encoding="utf-8-sig") as handle:
        header = handle.readline().strip()
    if not header:
        raise DataError(f"{path}: file is empty")
    return [c.strip() for c in header.split(",")]


def _read_string_table(path: Path, expected: tuple[str, ...]) -> pd.DataFrame:
    _check_columns(path, _read_header(path), expected)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    frame.columns = [c.strip() for c in frame.columns]
    if frame.empty:
        raise DataError(f"{path}: no data rows below the header")
    return frame


def _first_duplicate(values: pd.Series, path: Path, what: str) -> None:
    duplicated = values.duplicated(keep=False)
    if duplicated.any():
        rows = np.flatnonzero(duplicated.to_numpy())
        value = values.iloc[rows[0]]
        second = rows[1]
        raise DataError(
            f"{path} line {_line(second)}: duplicate {what} {value!r} (first on line {_line(rows[0])})"
        )


def read_labels(path: str | Path) -> pd.DataFrame:
    """Read a ``filename,ground_truth`` table (train.csv or an answer file)."""
    path = Path(path)
    frame = _read_string_table(path, TRAIN_COLUMNS)[list(TRAIN_COLUMNS)]
    frame["filename"] = frame["filename"].str.strip()
    frame["ground_truth"] = frame["ground_truth"].str.strip()
    empty_name = np.flatnonzero((frame["filename"] == "").to_numpy())
    if len(empty_name):
        raise DataError(f"{path} line {_line(empty_name[0])}: empty filename")
    empty_label = np.flatnonzero((frame["ground_truth"] == "").to_numpy())
    if len(empty_label):
        row = empty_label[0]
        raise DataError(
            f"{path} line {_line(row)}: empty ground_truth for {frame['filename'].iloc[row]!r}"
        )
    _first_duplicate(frame["filename"], path, "filename")
    return frame


@dataclass
class PairTable:
    """test.csv held column-wise: row ids and image-name codes into ``images``."""

    path: Path
    row_id: pa.Array
    images: np.ndarray  # distinct image names, sorted
    query: np.ndarray  # int32 codes into images
    gallery: np.ndarray

    def __len__(self) -> int:
        return len(self.row_id)


def _encode(column: pa.ChunkedArray, images: np.ndarray) -> np.ndarray:
    return np.searchsorted(images, column.to_numpy(zero_copy_only=False)).astype(np.int32)


def read_pairs(path: str | Path) -> PairTable:
    """Read test.csv (``row_id,query_image,gallery_image``) column-wise; millions of rows are fine."""
    path = Path(path)
    header = _read_header(path)
    _check_columns(path, header, TEST_COLUMNS)
    types = {name: pa.string() for name in TEST_COLUMNS}
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=list(TEST_COLUMNS)),
        )
    except pa.ArrowInvalid as error:
        raise DataError(f"{path}: cannot parse CSV ({str(error).splitlines()[0]})") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: no data rows below the header")
    row_id = table["row_id"].combine_chunks()
    for name in TEST_COLUMNS:
        empty = pc.equal(pc.utf8_length(table[name]), 0)
        if pc.any(empty).as_py():
            row = int(pc.index(empty, True).as_py())
            raise DataError(f"{path} line {_line(row)}: empty {name}")
    if pc.count_distinct(row_id).as_py() != len(row_id):
        _first_duplicate(pd.Series(row_id.to_numpy(zero_copy_only=False)), path, "row_id")
    names = pa.chunked_array(table["query_image"].chunks + table["gallery_image"].chunks)
    images = np.sort(pc.unique(names).to_numpy(zero_copy_only=False)).astype(object)
    return PairTable(
        path=path,
        row_id=row_id,
        images=images,
        query=_encode(table["query_image"], images),
        gallery=_encode(table["gallery_image"], images),
    )


def read_submission(path: str | Path) -> tuple[pa.Array, np.ndarray]:
    """Read ``row_id,similarity``; similarities must be finite numbers."""
    path = Path(path)
    _check_columns(path, _read_header(path), SUBMISSION_COLUMNS)
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={"row_id": pa.string(), "similarity": pa.string()},
                include_columns=list(SUBMISSION_COLUMNS),
            ),
        )
    except pa.ArrowInvalid as error:
        raise DataError(f"{path}: cannot parse CSV ({str(error).splitlines()[0]})") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: no data rows below the header")
    text = table["similarity"].to_numpy(zero_copy_only=False)
    values = pd.to_numeric(pd.Series(text), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise DataError(
            f"{path} line {_line(bad[0])}: similarity {text[bad[0]]!r} is not a finite number"
        )
    return table["row_id"].combine_chunks(), values


def check_images_exist(names, image_dir: Path, table_path: Path) -> None:
    """Raise if any named image is missing from ``image_dir``: the first few names and the count."""
    present = {p.name for p in image_dir.iterdir()} if image_dir.is_dir() else set()
    missing = [name for name in names if name not in present]
    if missing:
        shown = ", ".join(missing[:_MISSING_SHOWN])
        more = f" and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
        raise DataError(
            f"{table_path}: {len(missing)} image file(s) not found in {image_dir}: {shown}{more}"
        )
