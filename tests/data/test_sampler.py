"""The epoch-seeded batch sampler: P x K, and P x K spread over groups (sightings)."""

import numpy as np
import pytest

from jaguar_reid.data.dataset import EpochBatchSampler


def _labels_and_groups():
    labels, groups = [], []
    for identity in range(6):
        for sighting in range(4):
            for photo in range(3):  # three photos per sighting
                labels.append(identity)
                groups.append(f"{identity}_{sighting}")
    return np.array(labels), np.array(groups)


def test_pk_groups_draws_each_identity_from_different_sightings():
    labels, groups = _labels_and_groups()
    sampler = EpochBatchSampler(labels, 16, "pk_groups", 4, seed=1, groups=groups)
    for batch in sampler:
        batch = np.array(batch)
        for identity in np.unique(labels[batch]):
            members = batch[labels[batch] == identity]
            assert len(members) == 4 and len(set(groups[members])) == 4  # four images, four sightings
    plain = EpochBatchSampler(labels, 16, "pk", 4, seed=1)
    spread = [len(set(groups[np.array(b)][labels[np.array(b)] == i])) for b in plain for i in np.unique(labels[np.array(b)])]
    assert min(spread) < 4  # plain P x K often repeats a sighting


def test_pk_groups_is_seeded_by_epoch_and_needs_groups():
    labels, groups = _labels_and_groups()
    sampler = EpochBatchSampler(labels, 16, "pk_groups", 4, seed=1, groups=groups)
    first = list(sampler)
    assert first == list(sampler)
    sampler.set_epoch(1)
    assert first != list(sampler)
    with pytest.raises(ValueError, match="pk_groups needs groups"):
        EpochBatchSampler(labels, 16, "pk_groups", 4)
