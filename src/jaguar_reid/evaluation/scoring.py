"""A local leaderboard: score a Kaggle submission for a test.csv against an answer file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from ..data.tables import DataError, PairTable, read_labels, read_pairs, read_submission
from .metrics import METRIC_NAMES, compute_metrics

LEADERBOARD_KEYS = (*METRIC_NAMES, "n_pairs", "n_queries", "n_identities")


def similarity_from_pairs(pairs: PairTable, similarity: np.ndarray) -> np.ndarray:
    """Scatter pair similarities into an (images x images) matrix; unscored pairs are NaN."""
    n = len(pairs.images)
    matrix = np.full((n, n), np.nan, dtype=np.float64)
    matrix[pairs.query, pairs.gallery] = similarity
    return matrix


def align_submission(pairs: PairTable, submission_path: str | Path) -> np.ndarray:
    """The submission's similarities in test.csv row order; every row_id exactly once."""
    submission_path = Path(submission_path)
    row_id, values = read_submission(submission_path)
    if pc.count_distinct(row_id).as_py() != len(row_id):
        counts = pc.value_counts(row_id)
        duplicate = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
        raise DataError(f"{submission_path}: duplicate row_id {duplicate!r}")
    position = pc.index_in(pairs.row_id, value_set=row_id)
    if position.null_count:
        first = int(pc.index(pc.is_null(position), True).as_py())
        raise DataError(
            f"{submission_path}: {position.null_count} row_id(s) of {pairs.path} missing, "
            f"first {pairs.row_id[first].as_py()!r} (test.csv line {first + 2})"
        )
    if len(row_id) != len(pairs):
        known = pc.is_in(row_id, value_set=pairs.row_id)
        first = int(pc.index(known, False).as_py())
        raise DataError(
            f"{submission_path} line {first + 2}: unknown row_id {row_id[first].as_py()!r} "
            f"(not in {pairs.path}; {len(row_id) - len(pairs)} unknown in all)"
        )
    return values[position.to_numpy()]


def score_submission(submission: str | Path, test_csv: str | Path, labels_csv: str | Path) -> dict:
    """Leaderboard metrics of a submission, like Kaggle would compute them (plus extras)."""
    pairs = read_pairs(test_csv)
    answers = read_labels(labels_csv)
    lookup = dict(zip(answers["filename"], answers["ground_truth"]))
    missing = [name for name in pairs.images if name not in lookup]
    if missing:
        raise DataError(
            f"{labels_csv}: {len(missing)} image(s) of {test_csv} have no ground_truth, first {missing[0]!r}"
        )
    values = align_submission(pairs, submission)
    labels = np.array([lookup[name] for name in pairs.images], dtype=object)
    return compute_metrics(similarity_from_pairs(pairs, values), labels)
