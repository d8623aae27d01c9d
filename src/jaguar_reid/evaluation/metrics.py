"""Leaderboard metrics on a similarity matrix of one image set (pure functions on arrays).

Conventions shared by every function here:

- ``similarity`` is (N, N); entry (i, j) scores query i against gallery image j. The diagonal is
  never used (an image is not its own match). NaN marks a pair that is not scored at all (for
  example, a test.csv that omits it); such pairs are left out as if absent.
- Ties are handled as scikit-learn does: tied scores form one threshold, so every positive in a
  tie group gets the precision measured at the end of that group (the expected order under a
  random tie-break is not assumed). AUC counts a tied positive/negative pair as one half.
- A query without any positive among its scored pairs has no AP; it is excluded from every
  query-averaged metric and counted in ``n_queries_without_positive``.
"""

from __future__ import annotations

import numpy as np

_ROW_CHUNK = 512
# The quality metrics every table reports, leaderboard metric first.
METRIC_NAMES = ("identity_balanced_map", "retrieval_map", "retrieval_top1", "pair_auc", "pair_ap")
# Plain-words names and definitions; every metric is higher-is-better, 1.0 is perfect.
METRIC_LABELS = {
    "identity_balanced_map": ("identity-balanced mAP",
                              "the leaderboard metric: average precision of each query image over all other images, "
                              "averaged within each identity, then across identities"),
    "retrieval_map": ("mAP", "average precision per query image, averaged over all queries"),
    "retrieval_top1": ("top-1", "share of query images whose most similar other image shows the same animal"),
    "pair_auc": ("pair AUC", "chance that a same-animal pair scores higher than a different-animal pair"),
    "pair_ap": ("pair AP", "average precision over all pairs ranked by similarity, same animal = positive"),
}

OTHER_GROUPS = "_other_groups"


def metric_label(key: str) -> str:
    """The plain-words name of a metric key, e.g. ``pair_auc_other_groups`` -> "pair AUC, other groups"."""
    base = key.removesuffix(OTHER_GROUPS)
    return METRIC_LABELS[base][0] + (", other groups" if base != key else "") if base in METRIC_LABELS else key


def _ranked(similarity: np.ndarray, labels: np.ndarray, rows: slice):
    """Scores and positive flags of the rows' pairs, sorted by descending score."""
    block = np.array(similarity[rows], dtype=np.float64)
    index = np.arange(rows.start, rows.stop)
    block[np.arange(len(index)), index] = np.nan
    valid = ~np.isnan(block)
    block[~valid] = -np.inf
    positive = (labels[index][:, None] == labels[None, :]) & valid
    order = np.argsort(-block, axis=1, kind="stable")
    scores = np.take_along_axis(block, order, axis=1)
    positive = np.take_along_axis(positive, order, axis=1)
    return scores, positive, valid.sum(axis=1)


def _tie_group_end(scores: np.ndarray) -> np.ndarray:
    """For each position of each sorted row, the index of the last element of its tie group."""
    n = scores.shape[1]
    is_end = np.ones_like(scores, dtype=bool)
    is_end[:, :-1] = scores[:, :-1] != scores[:, 1:]
    end = np.where(is_end, np.arange(n)[None, :], n)
    return np.minimum.accumulate(end[:, ::-1], axis=1)[:, ::-1]


def per_query_ap(similarity: np.ndarray, labels) -> tuple[np.ndarray, np.ndarray]:
    """AP and tie-aware top-1 hit rate of every query; NaN where a query has no positive."""
    labels = np.asarray(labels)
    n = len(labels)
    ap = np.full(n, np.nan)
    top1 = np.full(n, np.nan)
    for start in range(0, n, _ROW_CHUNK):
        rows = slice(start, min(n, start + _ROW_CHUNK))
        scores, positive, _ = _ranked(similarity, labels, rows)
        end = _tie_group_end(scores)
        hits = np.cumsum(positive, axis=1)
        hits_at_end = np.take_along_axis(hits, end, axis=1)
        precision = hits_at_end / (end + 1)
        n_pos = positive.sum(axis=1)
        has = n_pos > 0
        ap_rows = np.where(positive, precision, 0.0).sum(axis=1)
        ap[rows][has] = ap_rows[has] / n_pos[has]
        top1[rows][has] = precision[has, 0]
    return ap, top1


def identity_ap(ap: np.ndarray, labels) -> dict[str, float]:
    """Mean AP of each identity's queries (identities whose queries all lack positives omitted)."""
    labels = np.asarray(labels)
    result = {}
    for identity in np.unique(labels):
        values = ap[(labels == identity) & ~np.isnan(ap)]
        if len(values):
            result[str(identity)] = float(values.mean())
    return result


def identity_balanced_map(similarity: np.ndarray, labels) -> float:
    """The competition metric: AP per query, averaged within each identity, then across identities."""
    ap, _ = per_query_ap(similarity, labels)
    per_identity = identity_ap(ap, labels)
    return float(np.mean(list(per_identity.values()))) if per_identity else float("nan")


def retrieval_map(similarity: np.ndarray, labels) -> float:
    """Mean AP over queries with at least one positive."""
    ap, _ = per_query_ap(similarity, labels)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def retrieval_top1(similarity: np.ndarray, labels) -> float:
    """Rank-1 accuracy; a tie at rank 1 scores the fraction of positives among the tied images."""
    _, top1 = per_query_ap(similarity, labels)
    return float(np.nanmean(top1)) if np.isfinite(top1).any() else float("nan")


def _pair_scores(similarity: np.ndarray, labels) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    n = len(labels)
    off_diagonal = ~np.eye(n, dtype=bool)
    scores = np.asarray(similarity)[off_diagonal]
    positive = (labels[:, None] == labels[None, :])[off_diagonal]
    valid = ~np.isnan(scores)
    return scores[valid], positive[valid]


def _pair_auc_ap(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """Tie-aware pair AUC and AP from sorted positive and negative scores (no argsort of all pairs)."""
    pos, neg = np.sort(scores[positive]), np.sort(scores[~positive])
    n_pos, n_neg = len(pos), len(neg)
    if n_pos == 0:
        return float("nan"), float("nan")
    thresholds, counts = np.unique(pos, return_counts=True)
    pos_at_or_above = n_pos - np.searchsorted(pos, thresholds, side="left")
    neg_below = np.searchsorted(neg, thresholds, side="left")
    neg_tied = np.searchsorted(neg, thresholds, side="right") - neg_below
    neg_at_or_above = n_neg - neg_below
    # Every positive of a tie group gets the precision at the end of its group.
    ap = float(np.sum(counts * pos_at_or_above / (pos_at_or_above + neg_at_or_above)) / n_pos)
    if n_neg == 0:
        return float("nan"), ap
    auc = float(np.sum(counts * (neg_below + 0.5 * neg_tied)) / (n_pos * n_neg))
    return auc, ap


def pair_auc(similarity: np.ndarray, labels) -> float:
    """ROC AUC over all scored off-diagonal ordered pairs; positive = same identity."""
    return _pair_auc_ap(*_pair_scores(similarity, labels))[0]


def pair_ap(similarity: np.ndarray, labels) -> float:
    """Average precision over all scored off-diagonal ordered pairs; positive = same identity."""
    return _pair_auc_ap(*_pair_scores(similarity, labels))[1]


def compute_metrics(similarity: np.ndarray, labels) -> dict:
    """Every metric at once (one ranking pass), with the counts behind them."""
    labels = np.asarray(labels)
    similarity = np.asarray(similarity)
    ap, top1 = per_query_ap(similarity, labels)
    per_identity = identity_ap(ap, labels)
    scores, positive = _pair_scores(similarity, labels)
    auc, pap = _pair_auc_ap(scores, positive)
    has = ~np.isnan(ap)
    return {
        "identity_balanced_map": float(np.mean(list(per_identity.values()))) if per_identity else float("nan"),
        "retrieval_map": float(ap[has].mean()) if has.any() else float("nan"),
        "retrieval_top1": float(top1[has].mean()) if has.any() else float("nan"),
        "pair_auc": auc,
        "pair_ap": pap,
        "n_pairs": int(len(scores)),
        "n_queries": int(has.sum()),
        "n_queries_without_positive": int((~has).sum()),
        "n_identities": len(per_identity),
        "per_identity_ap": per_identity,
    }


def scalar_metrics(similarity: np.ndarray, labels) -> dict:
    """``compute_metrics`` without the per-identity breakdown: every value a number (for logs and JSON)."""
    metrics = compute_metrics(similarity, labels)
    metrics.pop("per_identity_ap")
    return metrics
