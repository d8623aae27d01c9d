"""Metrics against scikit-learn and a slow, obviously correct loop, on random cases with ties."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from jaguar_reid.evaluation.metrics import (
    compute_metrics,
    identity_balanced_map,
    pair_ap,
    pair_auc,
    per_query_ap,
    retrieval_map,
    retrieval_top1,
)


def _slow_ap(scores, positive):
    """AP with tie groups, written as a plain loop over thresholds."""
    total = sum(positive)
    if total == 0:
        return None
    ap, seen_tp = 0.0, 0
    for threshold in sorted(set(scores), reverse=True):
        tp = sum(1 for s, p in zip(scores, positive) if s >= threshold and p)
        count = sum(1 for s in scores if s >= threshold)
        ap += (tp - seen_tp) / total * (tp / count)
        seen_tp = tp
    return ap


def _slow_metrics(similarity, labels):
    n = len(labels)
    per_identity, aps, top1 = {}, [], []
    for i in range(n):
        others = [j for j in range(n) if j != i and not np.isnan(similarity[i, j])]
        scores = [similarity[i, j] for j in others]
        positive = [labels[j] == labels[i] for j in others]
        ap = _slow_ap(scores, positive)
        if ap is None:
            continue
        aps.append(ap)
        best = max(scores)
        tied = [p for s, p in zip(scores, positive) if s == best]
        top1.append(sum(tied) / len(tied))
        per_identity.setdefault(labels[i], []).append(ap)
    return {
        "identity_balanced_map": np.mean([np.mean(v) for v in per_identity.values()]),
        "retrieval_map": np.mean(aps),
        "retrieval_top1": np.mean(top1),
    }


@st.composite
def cases(draw):
    n = draw(st.integers(2, 14))
    labels = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    # Few distinct values force ties; NaN marks unscored pairs.
    values = draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, -0.3, np.nan]), min_size=n * n, max_size=n * n))
    similarity = np.array(values, dtype=np.float64).reshape(n, n)
    return similarity, np.array(labels)


@settings(max_examples=200, deadline=None)
@given(cases())
def test_query_metrics_match_slow_loop(case):
    similarity, labels = case
    slow = _slow_metrics(similarity, labels.tolist()) if any(
        any(labels[j] == labels[i] and j != i and not np.isnan(similarity[i, j]) for j in range(len(labels)))
        for i in range(len(labels))
    ) else None
    fast = compute_metrics(similarity, labels)
    if slow is None:
        assert fast["n_queries"] == 0 and np.isnan(fast["identity_balanced_map"])
        return
    for key in slow:
        assert fast[key] == pytest.approx(slow[key], abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(cases())
def test_query_ap_matches_sklearn(case):
    similarity, labels = case
    ap, _ = per_query_ap(similarity, labels)
    for i in range(len(labels)):
        mask = (np.arange(len(labels)) != i) & ~np.isnan(similarity[i])
        positive = labels[mask] == labels[i]
        if positive.any():
            assert ap[i] == pytest.approx(average_precision_score(positive, similarity[i, mask]), abs=1e-12)
        else:
            assert np.isnan(ap[i])


@settings(max_examples=200, deadline=None)
@given(cases())
def test_pair_metrics_match_sklearn(case):
    similarity, labels = case
    mask = ~np.eye(len(labels), dtype=bool) & ~np.isnan(similarity)
    positive = (labels[:, None] == labels[None, :])[mask]
    scores = similarity[mask]
    if positive.any() and not positive.all():
        assert pair_auc(similarity, labels) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)
    if positive.any():
        assert pair_ap(similarity, labels) == pytest.approx(average_precision_score(positive, scores), abs=1e-12)


def test_perfect_and_reversed_rankings():
    labels = np.array([0, 0, 1, 1, 2, 2])
    same = (labels[:, None] == labels[None, :]).astype(float)
    metrics = compute_metrics(same, labels)
    assert metrics["identity_balanced_map"] == metrics["pair_auc"] == metrics["retrieval_top1"] == 1.0
    assert compute_metrics(-same, labels)["pair_auc"] == 0.0


def test_identity_balance_weights_identities_equally():
    # Identity 0 has 4 images ranked perfectly; identity 1 has 2 images ranked last.
    labels = np.array([0, 0, 0, 0, 1, 1])
    similarity = (labels[:, None] == labels[None, :]).astype(float)
    similarity[4, 5] = similarity[5, 4] = -1.0
    per_query = compute_metrics(similarity, labels)
    assert per_query["per_identity_ap"] == {"0": 1.0, "1": 0.2}
    assert identity_balanced_map(similarity, labels) == pytest.approx(0.6)
    assert retrieval_map(similarity, labels) == pytest.approx((4 * 1.0 + 2 * 0.2) / 6)


def test_queries_without_positive_are_excluded_and_counted():
    labels = np.array([0, 0, 1])
    similarity = np.random.default_rng(0).random((3, 3))
    metrics = compute_metrics(similarity, labels)
    assert metrics["n_queries"] == 2 and metrics["n_queries_without_positive"] == 1
    assert metrics["n_identities"] == 1 and metrics["n_pairs"] == 6


def test_tie_at_rank_one_counts_fraction():
    labels = np.array([0, 0, 1])
    similarity = np.ones((3, 3))
    assert retrieval_top1(similarity, labels) == pytest.approx(0.5)
