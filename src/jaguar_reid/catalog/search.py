"""Exact cosine search over a catalogue's embeddings, held in memory.

NumPy rather than faiss: search is exact (a field team's catalogue is thousands to a few hundred
thousand photos, where a BLAS matrix product over float32 meets the speed goals on two cores;
see ``bench/search.py``), and it adds no dependency. Queries are processed in chunks so memory
stays bounded for thousands of photos at once.
"""

from __future__ import annotations

import numpy as np


class EmbeddingIndex:
    """L2-normalised embeddings (N, D) with exact top-k cosine search."""

    def __init__(self, vectors: np.ndarray, chunk: int = 256):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.chunk = chunk

    def __len__(self) -> int:
        return len(self.vectors)

    def similarities(self, queries: np.ndarray) -> np.ndarray:
        """Cosine similarities (Q, N) of L2-normalised queries to every indexed vector."""
        return np.asarray(queries, dtype=np.float32) @ self.vectors.T

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar indexed vectors of each query: indices and similarities (Q, k), best first."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        k = min(k, len(self))
        indices = np.empty((len(queries), k), dtype=np.int64)
        scores = np.empty((len(queries), k), dtype=np.float32)
        for start in range(0, len(queries), self.chunk):
            block = self.similarities(queries[start:start + self.chunk])
            top = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < block.shape[1] else np.tile(np.arange(k), (len(block), 1))
            top_scores = np.take_along_axis(block, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            indices[start:start + len(block)] = np.take_along_axis(top, order, axis=1)
            scores[start:start + len(block)] = np.take_along_axis(top_scores, order, axis=1)
        return indices, scores
