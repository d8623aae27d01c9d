"""Post-processing: AQE, k-reciprocal re-ranking (against the literal reference), blend, transforms."""

import numpy as np
import pytest

from jaguar_reid.config import PostprocessConfig
from jaguar_reid.evaluation.metrics import identity_balanced_map
from jaguar_reid.postprocess import (
    average_query_expansion,
    blend,
    euclidean_distance,
    flip_tta,
    k_reciprocal_rerank,
    l2_normalize,
    postprocess_similarity,
    score_transform,
)

from rerank_reference import re_ranking_literal


def _clusters(n_ids=8, per=6, dim=16, spread=0.8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    labels = np.repeat(np.arange(n_ids), per)
    return (centres[labels] + spread * rng.normal(size=(len(labels), dim))).astype(np.float32), labels


@pytest.mark.parametrize("n, dim, k1, k2, lam, seed", [
    (60, 8, 20, 6, 0.3, 0), (200, 16, 20, 6, 0.3, 1), (120, 4, 7, 3, 0.5, 2), (90, 32, 20, 1, 0.0, 3),
    (150, 8, 5, 2, 1.0, 4), (15, 8, 20, 6, 0.3, 5),  # N smaller than k1
])
def test_rerank_matches_literal_reference(n, dim, k1, k2, lam, seed):
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    distance = euclidean_distance(x)
    expected = re_ranking_literal(distance, k1, k2, lam)
    assert np.abs(k_reciprocal_rerank(distance, k1, k2, lam) - expected).max() < 1e-5


def test_rerank_on_clustered_embeddings_matches_reference_and_helps():
    x, labels = _clusters(spread=1.6)
    distance = euclidean_distance(x)
    reranked = k_reciprocal_rerank(distance)
    assert np.abs(reranked - re_ranking_literal(distance)).max() < 1e-5
    assert identity_balanced_map(-reranked, labels) >= identity_balanced_map(-distance, labels)


def test_rerank_duplicate_embeddings_and_single_identity():
    x = np.repeat(np.random.default_rng(0).normal(size=(5, 8)), 3, axis=0).astype(np.float32)
    reranked = k_reciprocal_rerank(euclidean_distance(x), k1=4, k2=2)
    assert reranked.shape == (15, 15) and np.isfinite(reranked).all()
    # Copies of one embedding end up closer to each other than to anything else.
    for i in range(15):
        same = [j for j in range(15) if j // 3 == i // 3 and j != i]
        other = [j for j in range(15) if j // 3 != i // 3]
        assert reranked[i, same].max() < reranked[i, other].min()
    one = k_reciprocal_rerank(euclidean_distance(np.ones((4, 3), dtype=np.float32)))
    assert np.isfinite(one).all()


def test_rerank_tiny_sets():
    assert k_reciprocal_rerank(np.zeros((1, 1), dtype=np.float32)).shape == (1, 1)
    assert k_reciprocal_rerank(np.zeros((0, 0), dtype=np.float32)).shape == (0, 0)


def test_aqe_matches_definition():
    x, _ = _clusters(n_ids=3, per=4)
    out = average_query_expansion(x, k=3, alpha=3.0)
    xn = l2_normalize(x)
    sim = xn @ xn.T
    for i in range(len(x)):
        top = np.argsort(-sim[i])[:3]
        assert i in top
        expected = (np.maximum(sim[i, top], 0) ** 3) @ xn[top]
        assert np.allclose(out[i], expected / np.linalg.norm(expected), atol=1e-5)


def test_aqe_k_larger_than_set_and_k1_is_identity():
    x, _ = _clusters(n_ids=2, per=1)
    assert average_query_expansion(x, k=10).shape == x.shape
    assert np.allclose(average_query_expansion(x, k=1), l2_normalize(x), atol=1e-6)


def test_flip_tta_is_mean_of_normalised():
    a, b = np.array([[3.0, 0.0]]), np.array([[0.0, 0.5]])
    assert np.allclose(flip_tta(a, b), [[np.sqrt(0.5), np.sqrt(0.5)]])


def test_blend_and_transforms():
    raw, reranked = np.array([0.9, -0.2]), np.array([0.1, 0.8])
    assert np.allclose(blend(raw, reranked, 0.2), [0.2 * 0.9 + 0.8 * 0.9, 0.2 * -0.2 + 0.8 * 0.2])
    assert np.allclose(score_transform(np.array([-0.5, 0.5, 1.5]), "clip"), [0, 0.5, 1])
    assert np.allclose(score_transform(np.array([0.0]), "sigmoid"), [0.5])
    with pytest.raises(ValueError, match="unknown score transform"):
        score_transform(raw, "tanh")


def test_full_chain_improves_clustered_retrieval():
    x, labels = _clusters(n_ids=10, per=8, spread=1.7, seed=2)
    raw = identity_balanced_map(l2_normalize(x) @ l2_normalize(x).T, labels)
    final = postprocess_similarity(x, PostprocessConfig())
    assert final.min() >= 0 and final.max() <= 1
    assert identity_balanced_map(final, labels) > raw
    off = postprocess_similarity(x, PostprocessConfig(query_expansion=False, rerank=False, score_transform="none"))
    assert np.allclose(off, l2_normalize(x) @ l2_normalize(x).T, atol=1e-6)


def test_chain_until_switches_boxes_up_to_a_step():
    from jaguar_reid.postprocess import chain_until

    full = PostprocessConfig()
    assert chain_until(full, "raw").model_dump(include={"flip_tta", "query_expansion", "rerank", "blend"}) == {
        "flip_tta": False, "query_expansion": False, "rerank": False, "blend": False}
    assert chain_until(full, "+ flip TTA").flip_tta and not chain_until(full, "+ flip TTA").query_expansion
    assert chain_until(full, "+ k-reciprocal re-rank").rerank and not chain_until(full, "+ k-reciprocal re-rank").blend
    assert chain_until(full, "+ blend (w=0.2)") == full
    with pytest.raises(ValueError, match="unknown post-processing step"):
        chain_until(full, "+ magic")


def test_steps_end_in_the_final_similarity():
    from jaguar_reid.postprocess import postprocess_steps

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    for cfg in (PostprocessConfig(), PostprocessConfig(rerank=False), PostprocessConfig(blend=False, score_transform="none")):
        steps = list(postprocess_steps(x, cfg))
        assert np.array_equal(steps[-1][1], postprocess_similarity(x, cfg))
        assert steps[0][0] == "raw" and steps[-1][0].startswith("+ transform")
