import numpy as np

from jaguar_reid.catalog import EmbeddingIndex
from jaguar_reid.postprocess import l2_normalize


def test_search_is_exact_and_ordered():
    rng = np.random.default_rng(0)
    vectors, queries = l2_normalize(rng.normal(size=(1000, 32))), l2_normalize(rng.normal(size=(37, 32)))
    index = EmbeddingIndex(vectors, chunk=8)
    indices, scores = index.search(queries, k=5)
    brute = queries @ vectors.T
    assert np.array_equal(indices, np.argsort(-brute, axis=1)[:, :5])
    assert np.allclose(scores, np.sort(brute, axis=1)[:, ::-1][:, :5])
    indices, _ = EmbeddingIndex(vectors[:3]).search(queries[:1], k=10)  # k larger than the index
    assert sorted(indices[0].tolist()) == [0, 1, 2]
