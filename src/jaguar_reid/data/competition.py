"""A Kaggle-format data root: train.csv, optional test.csv, and their image folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .tables import DataError, PairTable, check_images_exist, read_labels, read_pairs


def find_image_dir(root: Path, split: str) -> Path:
    """``root/split/split`` (Kaggle's zip layout) if it exists, else ``root/split``."""
    nested = root / split / split
    return nested if nested.is_dir() else root / split


@dataclass
class Competition:
    """A Kaggle-format data root: train.csv, test.csv (optional) and the image folders."""
    root: Path
    train: pd.DataFrame  # filename, ground_truth
    train_dir: Path
    pairs: PairTable | None
    test_dir: Path | None

    @property
    def identities(self) -> list[str]:
        """The distinct identities of train.csv, sorted."""
        return sorted(self.train["ground_truth"].unique())

    def train_paths(self, filenames) -> list[Path]:
        """Paths of training images by file name, in the order given."""
        return [self.train_dir / name for name in filenames]

    def labels(self, filenames) -> np.ndarray:
        """The identity (ground_truth) of each training file, in the order given."""
        return self.train.set_index("filename").loc[list(filenames), "ground_truth"].to_numpy()


def _check_pair_images(pairs: PairTable, test_dir: Path) -> None:
    present = {p.name for p in test_dir.iterdir()} if test_dir.is_dir() else set()
    missing = np.array([name not in present for name in pairs.images])
    if not missing.any():
        return
    codes = np.flatnonzero(missing)
    first_row = int(np.flatnonzero(np.isin(pairs.query, codes) | np.isin(pairs.gallery, codes))[0])
    raise DataError(
        f"{pairs.path} line {first_row + 2}: pair names image {pairs.images[codes[0]]!r}, "
        f"not found in {test_dir} ({len(codes)} image(s) missing in all)"
    )


def load_competition(
    root: str | Path,
    train_images: str | Path | None = None,
    test_images: str | Path | None = None,
    require_test: bool = False,
) -> Competition:
    """Read and validate a data root; image folders are auto-detected unless given."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data root not found")
    train_csv = root / "train.csv"
    train = read_labels(train_csv)
    train_dir = Path(train_images) if train_images else find_image_dir(root, "train")
    check_images_exist(train["filename"], train_dir, train_csv)

    test_csv = root / "test.csv"
    pairs = test_dir = None
    if test_csv.exists():
        pairs = read_pairs(test_csv)
        test_dir = Path(test_images) if test_images else find_image_dir(root, "test")
        _check_pair_images(pairs, test_dir)
    elif require_test:
        raise DataError(f"{test_csv}: file not found (needed to predict pairs)")
    return Competition(root=root, train=train, train_dir=train_dir, pairs=pairs, test_dir=test_dir)
