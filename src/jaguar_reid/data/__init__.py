"""Kaggle tables, image loading, the validation split, datasets and synthetic demo data."""

from .competition import Competition, find_image_dir, load_competition
from .images import ImageLoadError, apply_alpha, load_image
from .split import Split, make_split, read_metadata_column
from .tables import DataError, PairTable, read_labels, read_pairs, read_submission

__all__ = [
    "Competition", "DataError", "ImageLoadError", "PairTable", "Split", "apply_alpha", "find_image_dir",
    "load_competition", "load_image", "make_split", "read_metadata_column", "read_labels", "read_pairs", "read_submission",
]
