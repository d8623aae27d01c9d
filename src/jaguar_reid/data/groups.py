"""Automatic groups of near-duplicate photos, for a split without a sighting column.

Bursts, video frames and the photos of one sighting look more alike than two photos of one animal
usually do. Within each identity, photos are clustered by average linkage on frozen-feature cosine
similarity (scikit-learn's agglomerative clustering), merging clusters while their mean
similarity is above a threshold; the threshold is a high quantile of the similarities between
photos of *different* identities, so it adapts to the backbone and the data and needs no sighting
labels: photos more alike than nearly all pairs of different animals are taken as one sighting.
Average linkage rather than single linkage (joining every pair above the threshold,
transitively): on the development sets single linkage either chains whole identities together or,
at stricter thresholds, leaves most photos alone (``bench/auto_groups.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import AgglomerativeClustering

# Above this many images the threshold's quantile is estimated on a random sample of pairs.
_MAX_EXACT_IMAGES = 6_000
_SAMPLED_PAIRS, _CHUNK = 1_000_000, 100_000


@dataclass
class AutoGroups:
    """Each image's group name (``identity#k``), the similarity threshold used, and the group count."""

    groups: list[str]
    threshold: float

    @property
    def count(self) -> int:
        """The number of distinct groups."""
        return len(set(self.groups))


def near_duplicate_groups(features: np.ndarray, labels, quantile: float = 0.8, seed: int = 0,
                          threshold: float | None = None) -> AutoGroups:
    """Group near-duplicates within each identity.

    ``features``: (N, D) frozen embeddings (any scale; they are L2-normalised here); ``labels``:
    N identities. The threshold (unless given) is the ``quantile`` of cosine similarities over
    pairs of images of different identities; within an identity, clusters are merged (average
    linkage) while their mean similarity is above it.
    """
    labels = np.asarray(labels)
    x = features.astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if threshold is None:
        threshold = _different_identity_quantile(x, labels, quantile, seed)
    groups = np.empty(len(labels), dtype=object)
    for identity in np.unique(labels):
        members = np.flatnonzero(labels == identity)
        if len(members) == 1 or not np.isfinite(threshold):  # one photo, or nothing to calibrate against
            groups[members] = [f"{identity}#{k}" for k in range(len(members))]
            continue
        distance = np.clip(1.0 - x[members] @ x[members].T, 0.0, None)
        clusters = AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="average",
                                           distance_threshold=1.0 - threshold).fit_predict(distance)
        groups[members] = [f"{identity}#{c}" for c in clusters]
    return AutoGroups(groups.tolist(), threshold)


def _different_identity_quantile(x: np.ndarray, labels: np.ndarray, quantile: float, seed: int) -> float:
    if len(labels) <= _MAX_EXACT_IMAGES:
        similarity = x @ x.T
        different = labels[:, None] != labels[None, :]
        values = similarity[np.triu(different, k=1)]
    else:
        rng = np.random.default_rng(seed)
        i, j = rng.integers(0, len(labels), size=(2, _SAMPLED_PAIRS))
        keep = labels[i] != labels[j]
        i, j = i[keep], j[keep]
        values = np.concatenate([np.einsum("nd,nd->n", x[i[k:k + _CHUNK]], x[j[k:k + _CHUNK]])
                                 for k in range(0, len(i), _CHUNK)])
    if len(values) == 0:  # a single identity: nothing to calibrate against, join nothing
        return float("inf")
    return float(np.quantile(values, quantile))
