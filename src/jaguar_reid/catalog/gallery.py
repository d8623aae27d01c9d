"""Open-set identification against a gallery of known photos: pure NumPy, no database.

``Gallery`` holds one model's embeddings of the catalogue's identified photos; ``identify``
ranks the individuals for each query vector and gives the verdict (``known`` or ``new``).
Queries go through in chunks (``EmbeddingIndex.similarities`` on at most ``chunk`` queries at a
time), so memory stays bounded however many photos are identified at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..evaluation.open_set import GalleryBlocks, OpenSetCalibration, decision_scores, individual_scores, pool_by_encounter
from .search import EmbeddingIndex

EXCLUDED_SIMILARITY = -2.0  # below any cosine similarity: a photo never matches itself
UNCERTAIN_BELOW = 0.5  # a "known" verdict whose calibrated probability is below this asks for a close look


@dataclass
class Candidate:
    """One individual proposed for a photo."""

    individual: str
    score: float  # from its photos' cosine similarities (max, or mean of the top k)
    decision_score: float  # what the threshold and the probability read (see evaluation.open_set.decision_scores)
    probability: float
    photos: list[dict]  # its best-matching catalogue photos: sha256, original_name, path, similarity


@dataclass
class Identification:
    """The answer for one photo: ranked candidates and the verdict (``known`` or ``new``)."""

    photo: str
    sha256: str | None
    verdict: str
    individual: str | None
    threshold: float
    candidates: list[Candidate] = field(default_factory=list)
    photos: list[str] = field(default_factory=list)  # an encounter's photos (``identify --by-encounter``)

    @property
    def level(self) -> str:
        """``known``, ``uncertain`` (known, but with a calibrated probability below 0.5) or ``new``."""
        if self.verdict != "known":
            return "new"
        return "known" if self.candidates[0].probability >= UNCERTAIN_BELOW else "uncertain"

    @property
    def says(self) -> str:
        """The verdict in words, led by the calibrated probability (the CLI, JSON and app all show this)."""
        if not self.candidates:
            return "probably a new individual"
        best = self.candidates[0]
        return {"known": f"{best.individual} (p {best.probability:.2f})",
                "uncertain": f"uncertain: {best.individual} p {best.probability:.2f}, compare closely",
                "new": f"probably a new individual (best: {best.individual} p {best.probability:.2f})"}[self.level]

    def to_json(self) -> dict:
        """As plain JSON-able dicts (what ``identify --json`` writes), with ``level`` and ``says``."""
        return {**asdict(self), "level": self.level, "says": self.says}


class Identifications(list):
    """``Identification`` of each readable photo, in order; ``skipped``: ``{"file", "reason"}`` of the others."""

    def __init__(self, results, skipped: list[dict], notes: list[str] | None = None):
        super().__init__(results)
        self.skipped, self.notes = skipped, notes or []


@dataclass(frozen=True)
class Gallery:
    """A catalogue's identified photos under one model.

    ``vectors``: (N, D) float32, L2-normalised; ``individuals``: (N,) names; ``photos``: N dicts
    (sha256, original_name, path); ``key``: the state it was read at (model id, change counter).
    """

    vectors: EmbeddingIndex
    individuals: np.ndarray
    photos: list[dict]
    key: tuple = ()
    blocks: GalleryBlocks = field(init=False)
    position: dict[str, int] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "blocks", GalleryBlocks.of(self.individuals))
        object.__setattr__(self, "position", {photo["sha256"]: i for i, photo in enumerate(self.photos)})

    def __len__(self) -> int:
        return len(self.photos)

    def members(self, individual_column: int) -> np.ndarray:
        """Gallery positions of the photos of ``blocks.individuals[individual_column]``."""
        starts = self.blocks.starts
        stop = starts[individual_column + 1] if individual_column + 1 < len(starts) else len(self.photos)
        return self.blocks.order[starts[individual_column]:stop]


def identify(gallery: Gallery, queries: np.ndarray, calibration: OpenSetCalibration, top_k: int = 5,
             photos_per_individual: int = 3, query_sha256: list[str | None] | None = None,
             chunk: int = 256) -> list[tuple[str, str | None, list[Candidate]]]:
    """For each query vector (Q, D): (verdict, proposed individual or None, top-k candidates).

    The verdict reads the best individual's decision score against ``calibration.threshold``,
    whatever ``top_k`` is. A query whose ``query_sha256`` is a gallery photo is not matched with it.
    """
    queries, hashes = _checked_queries(queries, top_k, query_sha256)
    answers = []
    for start in range(0, len(queries), chunk):
        similarity = _similarities(gallery, queries[start:start + chunk], hashes[start:start + chunk])
        scores, individuals = individual_scores(similarity, gallery.blocks, calibration.method, calibration.k)
        decisions = decision_scores(scores, calibration.normalization)
        for row in range(len(similarity)):
            answers.append(_ranking(gallery, similarity[row], scores[row], decisions[row], individuals, calibration,
                                    top_k, photos_per_individual))
    return answers


def identify_encounters(gallery: Gallery, queries: np.ndarray, encounters, calibration: OpenSetCalibration, top_k: int = 5,
                        photos_per_individual: int = 3, query_sha256: list[str | None] | None = None) -> list[tuple]:
    """For each encounter, in order of first appearance: (encounter, member indices, verdict, proposed
    individual or None, top-k candidates). An encounter's score for an individual pools its photos'
    scores (``pool_by_encounter``); ``calibration`` should be the encounter-level one. The best
    matching catalogue photos are those closest to any of the encounter's photos."""
    queries, hashes = _checked_queries(queries, top_k, query_sha256)
    members_of: dict = {}  # in order of first appearance; one pass, not a scan of every photo per encounter
    for index, encounter in enumerate(np.asarray(encounters, dtype=object).tolist()):
        members_of.setdefault(encounter, []).append(index)
    answers = []
    for encounter, members in members_of.items():  # one encounter at a time: memory stays bounded
        members = np.asarray(members)
        similarity = _similarities(gallery, queries[members], [hashes[i] for i in members])
        scores, individuals = individual_scores(similarity, gallery.blocks, calibration.method, calibration.k)
        pooled, _ = pool_by_encounter(scores, np.zeros(len(members)))
        decisions = decision_scores(pooled, calibration.normalization)
        ranking = _ranking(gallery, similarity.max(axis=0), pooled[0], decisions[0], individuals, calibration, top_k,
                           photos_per_individual)
        answers.append((encounter, members.tolist(), *ranking))
    return answers


def _checked_queries(queries, top_k: int, query_sha256) -> tuple[np.ndarray, list]:
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    return queries, list(query_sha256 or [None] * len(queries))


def _similarities(gallery: Gallery, queries: np.ndarray, hashes: list) -> np.ndarray:
    """Cosine similarities (Q, N) of queries to the gallery, a query that is a gallery photo never matching itself."""
    similarity = gallery.vectors.similarities(queries)
    for row, sha256 in enumerate(hashes):
        if sha256 in gallery.position:
            similarity[row, gallery.position[sha256]] = EXCLUDED_SIMILARITY
    return similarity


def _ranking(gallery: Gallery, similarity, scores, decision, individuals, calibration: OpenSetCalibration, top_k: int,
             photos_per_individual: int) -> tuple[str, str | None, list[Candidate]]:
    order = np.argsort(-decision, kind="stable")[:top_k]
    probabilities = calibration.probability(decision[order])
    candidates = []
    for column, probability in zip(order, probabilities):
        members = gallery.members(column)
        best = members[np.argsort(-similarity[members], kind="stable")[:photos_per_individual]]
        candidates.append(Candidate(str(individuals[column]), float(scores[column]), float(decision[column]),
                                    float(probability),
                                    [{**gallery.photos[j], "similarity": float(similarity[j])} for j in best]))
    known = decision[order[0]] >= calibration.threshold
    return ("known", candidates[0].individual, candidates) if known else ("new", None, candidates)
