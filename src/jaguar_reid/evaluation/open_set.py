"""Open-set identification: which known individual is this photo, or is it a new one?

Pure functions on arrays. A query is scored against every *individual* of a gallery (from the
similarities to that individual's images), the best individual is proposed, and a threshold on
its score decides "new individual". The threshold is set on validation data so that a target
share of known animals is wrongly called new; an isotonic calibration turns a score into the
probability that the candidate is right.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

INDIVIDUAL_SCORES = ("max", "mean_top_k")
NORMALIZATIONS = ("none", "cohort")
_LEFT_OUT = "\0left out"


@dataclass(frozen=True)
class GalleryBlocks:
    """A gallery's photos grouped by individual: ``order`` puts each individual's photos in one
    contiguous block starting at ``starts``; ``individuals`` sorted. Compute once per gallery."""

    order: np.ndarray
    individuals: np.ndarray
    starts: np.ndarray

    @classmethod
    def of(cls, gallery_individuals) -> GalleryBlocks:
        """The blocks of a gallery whose photos show ``gallery_individuals`` (N,)."""
        labels = np.asarray(gallery_individuals, dtype=object)
        order = np.argsort(labels, kind="stable")
        individuals, starts = np.unique(labels[order], return_index=True)
        return cls(order, individuals, starts)


def individual_scores(similarity: np.ndarray, gallery_individuals, method: str = "mean_top_k",
                      k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Scores (Q, I) of each query against each individual, and the individuals (I,), sorted.

    ``max``: the best similarity to any of the individual's images; ``mean_top_k``: the mean of
    its ``k`` best (all of them when it has fewer), which rewards matching several photos.
    ``gallery_individuals``: each gallery photo's individual, or their ``GalleryBlocks``.
    """
    if method not in INDIVIDUAL_SCORES:
        raise ValueError(f"individual score must be one of {', '.join(INDIVIDUAL_SCORES)}, got {method!r}")
    blocks = gallery_individuals if isinstance(gallery_individuals, GalleryBlocks) else GalleryBlocks.of(gallery_individuals)
    similarity = np.asarray(similarity, dtype=np.float32)[:, blocks.order]
    if method == "max":
        return np.maximum.reduceat(similarity, blocks.starts, axis=1), blocks.individuals
    scores = np.empty((similarity.shape[0], len(blocks.individuals)), dtype=np.float32)
    for column, (start, stop) in enumerate(zip(blocks.starts, [*blocks.starts[1:], similarity.shape[1]])):
        block = similarity[:, start:stop]
        top = min(k, block.shape[1])
        scores[:, column] = np.partition(block, block.shape[1] - top, axis=1)[:, -top:].mean(axis=1)
    return scores, blocks.individuals


def decision_scores(scores: np.ndarray, normalization: str = "none") -> np.ndarray:
    """The scores the "new individual" decision and the probabilities are made on (Q, I).

    ``none``: the individual scores themselves. ``cohort``: each query's scores standardised by
    the mean and standard deviation of its scores for every individual but the best one (the
    cohort of animals it is presumably not), i.e. how far a candidate stands out, as cohort score
    normalisation does in speaker and face verification. A photo that resembles every animal a
    little (light, pose, background) no longer passes for a match. Needs 3 individuals; with
    fewer it is ``none``. NaN scores (individuals left out) stay NaN and are not in the cohort.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    scores = np.asarray(scores, dtype=np.float32)
    if normalization == "none" or scores.shape[1] < 3:
        return scores
    filled = np.where(np.isnan(scores), -np.inf, scores)
    cohort = ~np.isnan(scores)
    cohort[np.arange(len(scores)), filled.argmax(axis=1)] = False
    values = np.where(cohort, scores, np.nan)
    with np.errstate(invalid="ignore"):
        mean, spread = np.nanmean(values, axis=1, keepdims=True), np.nanstd(values, axis=1, keepdims=True)
    return (scores - mean) / np.maximum(spread, 1e-6)


@dataclass
class OpenSetCalibration:
    """The "new individual" threshold, the score-to-probability map, and the numbers behind them."""

    method: str
    k: int
    normalization: str
    threshold: float
    target_known_called_new: float
    calibration_scores: list[float]
    calibration_probabilities: list[float]
    metrics: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    level: str = "photo"  # what a query is: one photo, or an encounter (its photos' scores pooled)
    encounter: dict | None = None  # the encounter-level calibration (to_json), when validation had encounters

    def for_encounters(self) -> OpenSetCalibration | None:
        """The calibration made for encounter queries (``pool_by_encounter``), or None."""
        return OpenSetCalibration.from_json(self.encounter) if self.encounter else None

    def probability(self, scores) -> np.ndarray:
        """P(candidate is the right individual) for individual scores (isotonic, so monotone)."""
        return np.interp(np.asarray(scores, dtype=np.float64), self.calibration_scores,
                         self.calibration_probabilities).astype(np.float32)

    def to_json(self) -> dict:
        """As a JSON-able dict (RUN/open_set.json, a catalogue's model row)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> OpenSetCalibration:
        """Read what ``to_json`` wrote."""
        return cls(**data)


def fit_isotonic(scores, correct) -> tuple[list[float], list[float]]:
    """Breakpoints of an increasing isotonic fit of ``correct`` (0/1) on ``scores``."""
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    model.fit(np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=np.float64))
    return model.X_thresholds_.tolist(), model.y_thresholds_.tolist()


def expected_calibration_error(probabilities, correct, bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width probability bins, weighted by bin size."""
    probabilities, correct = np.asarray(probabilities, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    edges = np.minimum((probabilities * bins).astype(int), bins - 1)
    error = 0.0
    for b in np.unique(edges):
        members = edges == b
        error += members.sum() * abs(correct[members].mean() - probabilities[members].mean())
    return float(error / max(len(probabilities), 1))


def pool_by_encounter(scores: np.ndarray, encounters, how: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Scores (E, I) of each encounter for each individual from its photos' individual scores
    (Q, I): their ``mean`` (the default, chosen on held-out sightings of both real sets, see
    docs/results/encounters.md) or their ``max`` (the best single photo); and the index of each
    encounter's first photo (E,)."""
    encounters = np.asarray(encounters, dtype=object)
    _, first, inverse = np.unique(encounters, return_index=True, return_inverse=True)
    if how == "max":
        pooled = np.full((len(first), scores.shape[1]), -np.inf, dtype=np.float64)
        np.maximum.at(pooled, inverse, scores)
        return pooled.astype(np.float32), first
    if how != "mean":
        raise ValueError(f"encounter pooling must be mean or max, got {how!r}")
    pooled = np.zeros((len(first), scores.shape[1]), dtype=np.float64)
    np.add.at(pooled, inverse, scores)
    return (pooled / np.bincount(inverse)[:, None]).astype(np.float32), first


def _candidates(scores: np.ndarray, individuals: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query's top candidates: their scores and individuals (Q, top), best first."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top]
    return np.take_along_axis(scores, order, axis=1), individuals[order]


def calibrate_open_set(similarity: np.ndarray, gallery_labels, query_labels, method: str = "mean_top_k", k: int = 3,
                       target_known_called_new: float = 0.05, simulate_unknown: bool = False,
                       normalization: str = "none", seed: int = 0, query_encounters=None,
                       pooling: str = "mean") -> OpenSetCalibration:
    """Threshold, probability calibration and open-set numbers from validation similarities (Q, G).

    Queries whose individual is not in the gallery are the unknown ones. ``simulate_unknown`` also
    turns each known query into an unknown one by leaving its own individual out (for splits
    without held-out identities). The threshold is the ``target_known_called_new`` quantile of the
    known queries' best decision score (see ``decision_scores``). Probabilities are an isotonic fit
    of "this candidate is right" on the top-5 candidates' scores; the calibration error is measured by two-fold cross-fitting over
    queries, so it is not judged on the data it was fitted to. With ``query_encounters`` (Q,) each
    encounter is one query, its photos' scores pooled (``pool_by_encounter``); an encounter shows
    one animal.
    """
    scores, individuals = individual_scores(similarity, gallery_labels, method, k)
    query_labels = np.asarray(query_labels, dtype=object)
    if query_encounters is not None:
        scores, first = pool_by_encounter(scores, query_encounters, pooling)
        query_labels = query_labels[first]
    known = np.isin(query_labels, individuals)
    notes = []
    if simulate_unknown:
        own = individuals[None, :] == query_labels[known][:, None]
        # The left-out individual's score is NaN (out of the cohort); the query's label matches no individual.
        scores = np.concatenate([scores, np.where(own, np.float32(np.nan), scores[known])])
        query_labels = np.concatenate([query_labels, np.full(int(known.sum()), _LEFT_OUT, dtype=object)])
        known = np.concatenate([known, np.zeros(int(known.sum()), dtype=bool)])
        notes.append("no identities were held out as unknown: each known query also stood for a new animal "
                     "by leaving its own individual out (set split.unknown_fraction for an honest estimate)")
    if known.sum() < 2 or (~known).sum() < 1:
        raise ValueError(f"open-set calibration needs known and unknown queries (got {int(known.sum())} known, "
                         f"{int((~known).sum())} unknown)")
    scores = decision_scores(scores, normalization)
    scores = np.where(np.isnan(scores), np.nanmin(scores) - 1.0, scores)  # a left-out individual ranks last
    best = scores.max(axis=1)
    threshold = float(np.quantile(best[known], target_known_called_new, method="lower"))
    top_scores, top_individuals = _candidates(scores, individuals, min(5, len(individuals)))
    top_correct = top_individuals == query_labels[:, None]
    x, y = fit_isotonic(top_scores.ravel(), top_correct.ravel())
    calibration = OpenSetCalibration(method, k, normalization, threshold, target_known_called_new, x, y, notes=notes,
                                     level="photo" if query_encounters is None else "encounter")
    calibration.metrics = {
        **open_set_metrics(top_scores, top_individuals, query_labels, known, threshold),
        "calibration_error": _cross_fitted_error(top_scores, top_correct, seed),
        "n_gallery_individuals": int(len(individuals)),
        "n_gallery_images": int(similarity.shape[1]),
    }
    return calibration


def open_set_metrics(top_scores: np.ndarray, top_individuals: np.ndarray, query_labels, known, threshold: float) -> dict:
    """Open-set numbers from each query's ranked candidates (Q, k) and the "new individual" threshold.

    ``known`` marks the queries whose individual is in the gallery; the rest are new animals.
    """
    from sklearn.metrics import roc_auc_score

    known, labels = np.asarray(known, dtype=bool), np.asarray(query_labels, dtype=object)
    correct = top_individuals == labels[:, None]
    best = top_scores[:, 0]
    both = known.any() and (~known).any()
    return {
        "rank1": float(correct[known, 0].mean()),
        "rank5": float(correct[known, :5].any(axis=1).mean()),
        "auroc_known_vs_new": float(roc_auc_score(known, best)) if both else float("nan"),
        "new_caught": float((best[~known] < threshold).mean()) if (~known).any() else float("nan"),
        "known_called_new": float((best[known] < threshold).mean()),
        "known_right_and_kept": float((correct[known, 0] & (best[known] >= threshold)).mean()),
        "n_known_queries": int(known.sum()),
        "n_unknown_queries": int((~known).sum()),
    }


def _cross_fitted_error(top_scores: np.ndarray, top_correct: np.ndarray, seed: int) -> float:
    """Calibration error of the top candidate's probability, each half of the queries fitted on the other half."""
    fold = np.random.default_rng(seed).permutation(len(top_scores)) % 2
    probabilities = np.empty(len(top_scores))
    for part in (0, 1):
        x, y = fit_isotonic(top_scores[fold != part].ravel(), top_correct[fold != part].ravel())
        probabilities[fold == part] = np.interp(top_scores[fold == part, 0], x, y)
    return expected_calibration_error(probabilities, top_correct[:, 0])


OPEN_SET_LABELS = {
    "rank1": "rank-1 accuracy (known animals)",
    "rank5": "rank-5 accuracy (known animals)",
    "auroc_known_vs_new": "AUROC known vs new (best score)",
    "new_caught": "new animals called new",
    "known_called_new": "known animals called new",
    "known_right_and_kept": "known animals named right",
    "calibration_error": "probability calibration error (ECE)",
}


def format_open_set(calibration: OpenSetCalibration) -> str:
    """The open-set calibration as labelled lines (``jaguar-reid evaluate``, ``demo``)."""
    m = calibration.metrics
    lines = [f"open set on validation: {m['n_known_queries']} photos of known and {m['n_unknown_queries']} of new animals "
             f"against {m['n_gallery_images']} photos of {m['n_gallery_individuals']} individuals "
             f"(individual score: {calibration.method}, normalisation: {calibration.normalization}); "
             f"'new individual' below {calibration.threshold:.4f}",
             format_open_set_metrics(m)]
    lines += [f"  note: {note}" for note in calibration.notes]
    return "\n".join(lines)


def format_open_set_metrics(metrics: dict) -> str:
    """Open-set numbers (rank-1, AUROC, new caught at the threshold, ...) as text lines."""
    return "\n".join(f"  {label:40} {metrics[key]:.4f}" for key, label in OPEN_SET_LABELS.items() if key in metrics)
