"""Transductive post-processing of one image set's embeddings (pure functions on arrays).

The seed's chain: L2-normalise -> flip TTA (done at embedding time) -> average query expansion
-> k-reciprocal re-ranking -> blend of raw and re-ranked similarity -> score transform.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

from .config import PostprocessConfig

_ROW_BLOCK = 1024


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows (N, D) scaled to unit length, float32 (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cosine_similarity(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarity (A, B) float32 of the rows of ``a`` (A, D) with those of ``b`` (B, D); all
    against all of ``a`` when ``b`` is None."""
    a = l2_normalize(a)
    return a @ (a if b is None else l2_normalize(b)).T


def flip_tta(embeddings: np.ndarray, flipped: np.ndarray) -> np.ndarray:
    """Mean of the L2-normalised embeddings of the images and their mirrors, renormalised."""
    return l2_normalize(l2_normalize(embeddings) + l2_normalize(flipped))


def average_query_expansion(embeddings: np.ndarray, k: int = 3, alpha: float = 3.0) -> np.ndarray:
    """alpha-weighted AQE: each embedding becomes the normalised sum of its top-k neighbours.

    Neighbours are ranked by cosine similarity within the set, the item itself included (it is
    its own nearest neighbour); weights are max(similarity, 0) ** alpha.
    """
    x = l2_normalize(embeddings)
    n = len(x)
    k = min(k, n)
    expanded = np.empty_like(x)
    for start in range(0, n, _ROW_BLOCK):
        sim = x[start : start + _ROW_BLOCK] @ x.T
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        weights = np.maximum(np.take_along_axis(sim, top, axis=1), 0.0) ** alpha
        expanded[start : start + _ROW_BLOCK] = np.einsum("bk,bkd->bd", weights, x[top])
    return l2_normalize(expanded)


def euclidean_distance(embeddings: np.ndarray) -> np.ndarray:
    """Euclidean distance of L2-normalised embeddings, float32 (N, N)."""
    x = l2_normalize(embeddings)
    distance = x @ x.T
    np.multiply(distance, -2.0, out=distance)
    np.add(distance, 2.0, out=distance)
    np.maximum(distance, 0.0, out=distance)
    return np.sqrt(distance, out=distance)


def _nearest(distance: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's k smallest entries, ascending (ties broken by index), int32 (N, k)."""
    n = len(distance)
    k = min(k, n)
    result = np.empty((n, k), dtype=np.int32)
    for start in range(0, n, _ROW_BLOCK):
        block = distance[start : start + _ROW_BLOCK]
        if k < n:
            part = np.argpartition(block, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(n), block.shape)
        values = np.take_along_axis(block, part, axis=1)
        order = np.lexsort((part, values), axis=1)
        result[start : start + _ROW_BLOCK] = np.take_along_axis(part, order, axis=1)
    return result


def _neighbour_matrix(rank: np.ndarray, k: int) -> sp.csr_matrix:
    """Boolean sparse matrix with row i marking rank[i, :k]."""
    n = len(rank)
    cols = rank[:, :k]
    rows = np.repeat(np.arange(n), cols.shape[1])
    return sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols.ravel())), shape=(n, n))


def _reciprocal(rank: np.ndarray, k: int) -> sp.csr_matrix:
    """R[i, j] = 1 when j is among i's first k entries and i among j's (both include themselves)."""
    forward = _neighbour_matrix(rank, k)
    return forward.multiply(forward.T).tocsr()


def _ragged_arange(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + c) for each (s, c)."""
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return offsets + np.arange(counts.sum())


def k_reciprocal_rerank(distance: np.ndarray, k1: int = 20, k2: int = 6, lam: float = 0.3) -> np.ndarray:
    """k-reciprocal re-ranking (Zhong et al., CVPR 2017) of ONE set of N items, all-vs-all.

    ``distance``: (N, N) Euclidean distance of L2-normalised embeddings (query and gallery are the
    same set; never pass the same images twice). Returns the (N, N) float32 re-ranked distance,
    equal (within float32 rounding) to the widely copied ``re_ranking`` reference over the union
    of its query and gallery.

    Written by hand because no maintained library offers it for one set without the reference's
    cost (several dense N x N arrays and Python loops over N): here the k-reciprocal structure is
    sparse and the Jaccard sums are vectorised over the sparse supports. Peak memory is about two
    N x N float32 arrays (the result and the normalised distance it is built in).
    """
    distance = np.asarray(distance, dtype=np.float32)
    n = len(distance)
    if distance.shape != (n, n):
        raise ValueError(f"distance must be square, got shape {distance.shape}")
    if n == 0:
        return distance.copy()
    original = _normalised_distance(distance)
    rank = _nearest(original, max(k1 + 1, k2))
    v = _expansion_weights(original, rank, k1, k2)
    _blend_jaccard(original, v, lam)
    return original


def _normalised_distance(distance: np.ndarray) -> np.ndarray:
    """The reference's original_dist: transpose(d^2 / column max), built block by block into one new array."""
    n = len(distance)
    column_max = np.zeros(n, dtype=np.float32)
    for start in range(0, n, _ROW_BLOCK):
        column_max = np.maximum(column_max, np.square(distance[start : start + _ROW_BLOCK]).max(axis=0))
    column_max[column_max == 0] = 1.0  # an all-zero column divides 0/0 in the reference; keep zeros
    original = np.empty_like(distance)
    for start in range(0, n, _ROW_BLOCK):
        block = np.square(distance[:, start : start + _ROW_BLOCK].T)
        block /= column_max[start : start + _ROW_BLOCK, None]
        original[start : start + _ROW_BLOCK] = block
    return original


def _expansion_weights(original: np.ndarray, rank: np.ndarray, k1: int, k2: int) -> sp.csr_matrix:
    """V: exp(-distance) over each item's expanded k-reciprocal set, row-normalised, then averaged over its k2 neighbours."""
    n = len(original)
    reciprocal = _reciprocal(rank, k1 + 1)
    reciprocal_half = _reciprocal(rank, int(np.around(k1 / 2.0)) + 1)
    # Candidate c of K(i) expands i's set by K_half(c) when |K_half(c) & K(i)| > 2/3 |K_half(c)|.
    overlap = reciprocal_half @ reciprocal.T  # overlap[c, i] = |K_half(c) & K(i)|
    half_size = np.asarray(reciprocal_half.sum(axis=1)).ravel()
    common = reciprocal.multiply(overlap.T).tocoo()  # at (i, c) for c in K(i) with any overlap
    accept = common.data > (2.0 / 3.0) * half_size[common.col]
    accepted = sp.csr_matrix(
        (np.ones(accept.sum(), dtype=np.float32), (common.row[accept], common.col[accept])), shape=(n, n)
    )
    expansion = ((reciprocal + accepted @ reciprocal_half) > 0).tocsr()
    expansion.sort_indices()

    rows = np.repeat(np.arange(n), np.diff(expansion.indptr))
    weights = np.exp(-original[rows, expansion.indices]).astype(np.float32)
    row_sums = np.bincount(rows, weights=weights, minlength=n)
    weights /= row_sums[rows]
    v = sp.csr_matrix((weights, expansion.indices, expansion.indptr), shape=(n, n))
    if k2 != 1:
        v = (_neighbour_matrix(rank, k2) @ v).tocsr()
        v.data /= np.float32(min(k2, n))
    v.eliminate_zeros()
    return v


def _blend_jaccard(original: np.ndarray, v: sp.csr_matrix, lam: float) -> None:
    """In place: original = (1 - lam) Jaccard + lam original, where the Jaccard overlap of rows i and j
    is the sum over shared columns l of min(V[i, l], V[j, l])."""
    n = len(original)
    v_csc = v.tocsc()
    col_nnz = np.diff(v_csc.indptr)
    for start in range(0, n, _ROW_BLOCK // 4):
        stop = min(n, start + _ROW_BLOCK // 4)
        lo, hi = v.indptr[start], v.indptr[stop]
        query_rows = np.repeat(np.arange(stop - start), np.diff(v.indptr[start : stop + 1]))
        cols, values = v.indices[lo:hi], v.data[lo:hi]
        counts = col_nnz[cols]
        gather = _ragged_arange(v_csc.indptr[cols], counts)
        partner = v_csc.indices[gather]
        minimum = np.minimum(np.repeat(values, counts), v_csc.data[gather])
        flat = np.repeat(query_rows, counts).astype(np.int64) * n + partner
        shared = np.bincount(flat, weights=minimum, minlength=(stop - start) * n).reshape(stop - start, n)
        jaccard = 1.0 - shared / (2.0 - shared)
        block = original[start:stop]
        block *= lam
        block += (1.0 - lam) * jaccard.astype(np.float32)


def blend(raw_similarity: np.ndarray, reranked_distance: np.ndarray, weight: float = 0.2) -> np.ndarray:
    """weight * raw + (1 - weight) * (1 - re-ranked distance)."""
    return weight * raw_similarity + (1.0 - weight) * (1.0 - reranked_distance)


def score_transform(similarity: np.ndarray, name: str = "clip") -> np.ndarray:
    """``clip`` to [0, 1], ``none``, or ``sigmoid``; all are monotonic, so rankings are unchanged."""
    if name == "clip":
        return np.clip(similarity, 0.0, 1.0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-similarity))
    if name == "none":
        return similarity
    raise ValueError(f"unknown score transform {name!r} (clip, none, sigmoid)")


def postprocess_steps(embeddings: np.ndarray, cfg: PostprocessConfig,
                     raw: np.ndarray | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Each switched-on step of the chain in order, as (step name, (N, N) similarity).

    ``embeddings`` is the chain's input: flip-TTA embeddings when ``cfg.flip_tta``, else the raw
    ones. Given ``raw`` (the embeddings without flip TTA) as well, the first steps are "raw" and
    "+ flip TTA"; otherwise the first step is "raw" on ``embeddings``. Then "+ query expansion",
    "+ k-reciprocal re-rank", "+ blend (w=...)" and "+ transform (...)", the last of which is the
    final similarity. Steps are computed lazily, one at a time.
    """
    x = l2_normalize(embeddings)
    if raw is not None and cfg.flip_tta:
        yield "raw", cosine_similarity(raw)
        similarity = cosine_similarity(x)
        yield "+ flip TTA", similarity
    else:
        similarity = cosine_similarity(x)
        yield "raw", similarity
    if cfg.query_expansion:
        x = average_query_expansion(x, cfg.aqe_k, cfg.aqe_alpha)
        similarity = cosine_similarity(x)
        yield "+ query expansion", similarity
    if cfg.rerank:
        reranked = k_reciprocal_rerank(euclidean_distance(x), cfg.rerank_k1, cfg.rerank_k2, cfg.rerank_lambda)
        yield "+ k-reciprocal re-rank", 1.0 - reranked
        similarity = blend(similarity, reranked, cfg.blend_weight if cfg.blend else 0.0)
        if cfg.blend:
            yield f"+ blend (w={cfg.blend_weight:g})", similarity
    yield f"+ transform ({cfg.score_transform})", score_transform(similarity, cfg.score_transform).astype(np.float32, copy=False)


def postprocess_similarity(embeddings: np.ndarray, cfg: PostprocessConfig) -> np.ndarray:
    """The configured chain from (TTA-merged) embeddings to the final (N, N) similarity."""
    for _, similarity in postprocess_steps(embeddings, cfg):
        pass
    return similarity


def chain_until(cfg: PostprocessConfig, step: str) -> PostprocessConfig:
    """``cfg`` with the boxes of the chain switched on up to and including ``step`` (a step name of
    ``postprocess_steps``), the later ones off: e.g. the best row of an ablation as a config."""
    order = ["raw", "+ flip TTA", "+ query expansion", "+ k-reciprocal re-rank", "+ blend", "+ transform"]
    matches = [i for i, name in enumerate(order) if step == name or step.startswith(name + " (")]
    if not matches:
        raise ValueError(f"unknown post-processing step {step!r}")
    upto = matches[0]
    return cfg.model_copy(update={"flip_tta": upto >= 1 and (cfg.flip_tta or step == "+ flip TTA"),
                                  "query_expansion": upto >= 2, "rerank": upto >= 3, "blend": upto >= 4})


def describe_chain(cfg: PostprocessConfig) -> str:
    """The switched-on boxes in words, e.g. "flip TTA, query expansion, clip"."""
    boxes = [name for name, on in (("flip TTA", cfg.flip_tta), ("query expansion", cfg.query_expansion),
                                   ("k-reciprocal re-ranking", cfg.rerank), ("blend", cfg.rerank and cfg.blend)) if on]
    return ", ".join(boxes + [cfg.score_transform if cfg.score_transform != "none" else "no transform"])


def every_box(cfg: PostprocessConfig, flip_tta: bool = True) -> PostprocessConfig:
    """``cfg`` with every box switched on (flip TTA per ``flip_tta``), keeping its parameters: the ablation's chain."""
    return cfg.model_copy(update={"flip_tta": flip_tta, "query_expansion": True, "rerank": True, "blend": True})
