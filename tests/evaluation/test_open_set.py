import numpy as np
import pytest

from jaguar_reid.evaluation.open_set import (
    OpenSetCalibration,
    calibrate_open_set,
    decision_scores,
    expected_calibration_error,
    format_open_set,
    individual_scores,
)


def test_individual_scores_max_and_mean_of_top_k():
    similarity = np.array([[0.9, 0.1, 0.5, 0.4, 0.3]], dtype=np.float32)
    labels = ["a", "a", "b", "b", "b"]
    scores, individuals = individual_scores(similarity, labels, "max")
    assert individuals.tolist() == ["a", "b"] and np.allclose(scores, [[0.9, 0.5]])
    scores, _ = individual_scores(similarity, labels, "mean_top_k", k=2)
    assert np.allclose(scores, [[0.5, 0.45]])
    with pytest.raises(ValueError, match="individual score"):
        individual_scores(similarity, labels, "median")


def _open_set_data(rng, n_known_ids=8, unknown_queries=40, separation=0.6, offset=0.0):
    """Gallery of 8 individuals x 5 photos; queries of known ones are closer to their own photos.
    ``offset``: spread of a per-query shift of all its similarities (a photo that looks like everything)."""
    gallery_labels = np.repeat([f"id{i}" for i in range(n_known_ids)], 5)
    known_labels = np.repeat([f"id{i}" for i in range(n_known_ids)], 10)
    similarity = rng.normal(0.0, 0.1, size=(len(known_labels) + unknown_queries, len(gallery_labels)))
    similarity[: len(known_labels)] += separation * (known_labels[:, None] == gallery_labels[None, :])
    similarity += rng.normal(0.0, offset, size=(len(similarity), 1))
    query_labels = np.concatenate([known_labels, [f"new{i}" for i in range(unknown_queries)]])
    return similarity.astype(np.float32), gallery_labels, query_labels


def test_calibration_meets_the_target_and_separates_known_from_new():
    similarity, gallery, queries = _open_set_data(np.random.default_rng(0))
    calibration = calibrate_open_set(similarity, gallery, queries, target_known_called_new=0.05, normalization="none")
    m = calibration.metrics
    assert m["known_called_new"] <= 0.05 + 1e-9 and m["known_called_new"] >= 0.0
    assert m["rank1"] > 0.95 and m["auroc_known_vs_new"] > 0.95 and m["new_caught"] > 0.8
    assert m["n_known_queries"] == 80 and m["n_unknown_queries"] == 40 and m["n_gallery_individuals"] == 8
    # probabilities are monotone in the score and the calibration error is small on separable data
    probabilities = calibration.probability([-1.0, 0.0, 0.3, 0.6, 1.0])
    assert np.all(np.diff(probabilities) >= 0) and probabilities[-1] > 0.9 and probabilities[0] < 0.1
    assert m["calibration_error"] < 0.1
    assert "new animals called new" in format_open_set(calibration)
    assert OpenSetCalibration.from_json(calibration.to_json()) == calibration


def test_decision_scores_standardise_by_the_other_individuals():
    scores = np.array([[0.9, 0.5, 0.4, 0.6], [0.9, 0.85, 0.8, 0.9]], dtype=np.float32)
    assert np.array_equal(decision_scores(scores, "none"), scores)
    z = decision_scores(scores, "cohort")
    assert z[0, 0] == pytest.approx((0.9 - 0.5) / np.std([0.5, 0.4, 0.6]), rel=1e-5)
    assert z[0].argmax() == 0 and z[0, 0] > z[1].max()  # a standout beats a photo that matches everything
    assert np.array_equal(decision_scores(scores[:, :2], "cohort"), scores[:, :2])  # too few individuals
    with_nan = decision_scores(np.array([[0.9, np.nan, 0.5, 0.4, 0.6]]), "cohort")
    assert np.isnan(with_nan[0, 1]) and with_nan[0, 0] == pytest.approx(z[0, 0], rel=1e-5)


def test_cohort_normalisation_copes_with_photos_that_match_everything():
    similarity, gallery, queries = _open_set_data(np.random.default_rng(3), separation=0.5, offset=0.3)
    raw = calibrate_open_set(similarity, gallery, queries, normalization="none").metrics
    cohort = calibrate_open_set(similarity, gallery, queries, normalization="cohort").metrics
    assert cohort["auroc_known_vs_new"] > raw["auroc_known_vs_new"] + 0.1
    assert cohort["new_caught"] > raw["new_caught"]


def test_chance_level_scores_do_not_separate():
    similarity, gallery, queries = _open_set_data(np.random.default_rng(1), separation=0.0)
    m = calibrate_open_set(similarity, gallery, queries).metrics
    assert 0.3 < m["auroc_known_vs_new"] < 0.7 and m["rank1"] < 0.4


def test_simulated_unknowns_leave_each_query_own_individual_out():
    similarity, gallery, queries = _open_set_data(np.random.default_rng(2), unknown_queries=0)
    with pytest.raises(ValueError, match="unknown"):
        calibrate_open_set(similarity, gallery, queries)
    calibration = calibrate_open_set(similarity, gallery, queries, simulate_unknown=True)
    assert calibration.metrics["n_unknown_queries"] == 80 and calibration.metrics["new_caught"] > 0.8
    assert calibration.notes and "unknown_fraction" in calibration.notes[0]


def test_expected_calibration_error():
    assert expected_calibration_error([0.9] * 10, [1] * 9 + [0]) == pytest.approx(0.0)
    assert expected_calibration_error([0.9] * 10, [0] * 10) == pytest.approx(0.9)


def test_calibration_at_encounter_level_pools_each_encounters_photos():
    from jaguar_reid.evaluation.open_set import pool_by_encounter

    scores = np.array([[0.9, 0.1], [0.5, 0.3], [0.2, 0.8]], dtype=np.float32)
    pooled, first = pool_by_encounter(scores, ["a", "a", "b"])
    assert np.allclose(pooled, [[0.7, 0.2], [0.2, 0.8]]) and first.tolist() == [0, 2]
    similarity, gallery, queries = _open_set_data(np.random.default_rng(4), separation=0.4)
    encounters = [f"{label}-{i // 3}" for i, label in enumerate(queries)]  # bursts of up to three photos of one animal
    photo = calibrate_open_set(similarity, gallery, queries)
    encounter = calibrate_open_set(similarity, gallery, queries, query_encounters=encounters)
    assert photo.level == "photo" and encounter.level == "encounter"
    assert encounter.metrics["n_known_queries"] + encounter.metrics["n_unknown_queries"] == len(set(encounters))
    assert encounter.metrics["auroc_known_vs_new"] >= photo.metrics["auroc_known_vs_new"] - 1e-9  # pooling only removes noise here
