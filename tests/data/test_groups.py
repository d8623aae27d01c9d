"""Automatic near-duplicate groups: bursts of one animal are joined, different photos are not."""

import numpy as np
from sklearn.metrics import adjusted_rand_score

from jaguar_reid.data.groups import near_duplicate_groups


def _bursts(rng, identities=4, bursts=5, frames=3, dim=64, noise=0.02):
    """Features of ``frames`` near-identical photos per burst; bursts of one identity share a weak identity direction."""
    features, labels, truth = [], [], []
    for identity in range(identities):
        centre = rng.normal(size=dim)
        for burst in range(bursts):
            photo = centre * 0.3 + rng.normal(size=dim)
            for _ in range(frames):
                features.append(photo + noise * rng.normal(size=dim))
                labels.append(f"id{identity}")
                truth.append(f"id{identity}/b{burst}")
    return np.array(features), labels, truth


def test_bursts_are_recovered_as_groups():
    features, labels, truth = _bursts(np.random.default_rng(0))
    result = near_duplicate_groups(features, labels, quantile=0.999)
    assert adjusted_rand_score(truth, result.groups) == 1.0
    assert result.count == 20
    # Groups never span identities.
    assert all(group.split("#")[0] == label for group, label in zip(result.groups, labels))


def test_average_linkage_does_not_chain_a_drifting_series_into_one_group():
    # Each photo is close to the next, but the ends are far apart: single linkage would join all.
    angles = np.linspace(0.0, 1.2, 13)
    features = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    result = near_duplicate_groups(features, ["x"] * 13, threshold=float(np.cos(0.25)))
    assert 1 < result.count < 13
    # Neighbours share groups: every group is a run of consecutive photos.
    assert all(result.groups[i] == result.groups[i + 1] or result.groups[i] not in result.groups[i + 1:]
               for i in range(12))


def test_an_identity_with_one_photo_is_its_own_group():
    features = np.eye(3)
    assert near_duplicate_groups(features, ["a", "b", "b"], threshold=0.5).groups[0] == "a#0"


def test_a_stricter_quantile_never_joins_more():
    features, labels, _ = _bursts(np.random.default_rng(1), noise=0.5)
    loose = near_duplicate_groups(features, labels, quantile=0.9)
    strict = near_duplicate_groups(features, labels, quantile=0.9999)
    assert strict.threshold > loose.threshold
    assert strict.count >= loose.count


def test_sampled_threshold_is_close_to_the_exact_one(monkeypatch):
    import jaguar_reid.data.groups as groups

    features, labels, _ = _bursts(np.random.default_rng(2), identities=10, bursts=10)
    exact = near_duplicate_groups(features, labels, quantile=0.99).threshold
    monkeypatch.setattr(groups, "_MAX_EXACT_IMAGES", 10)
    sampled = near_duplicate_groups(features, labels, quantile=0.99).threshold
    assert abs(sampled - exact) < 0.02
    assert sampled != exact  # the sampled path ran


def test_a_single_identity_joins_nothing():
    # No pair of different identities to calibrate the threshold on: every photo stays its own group.
    result = near_duplicate_groups(np.ones((3, 4)), ["a", "a", "a"])
    assert result.count == 3
