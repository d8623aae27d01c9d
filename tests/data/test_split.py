"""The validation split: stratified, deterministic, independent of row order and training seed."""

import numpy as np
import pytest

from jaguar_reid.data import DataError, Split, make_split


def _data(counts, seed=0):
    files, labels = [], []
    for identity, count in enumerate(counts):
        for k in range(count):
            files.append(f"img_{identity}_{k}.png")
            labels.append(f"id{identity}")
    order = np.random.default_rng(seed).permutation(len(files))
    return [files[i] for i in order], [labels[i] for i in order]


def test_stratified_per_identity():
    files, labels = _data([13, 45, 183, 2])
    split = make_split(files, labels, 0.2, 314159)
    label_of = dict(zip(files, labels))
    val_counts = {i: sum(label_of[f] == i for f in split.val) for i in set(labels)}
    assert val_counts == {"id0": 3, "id1": 9, "id2": 37, "id3": 1}
    assert sorted(split.train + split.val) == sorted(files)
    assert not set(split.train) & set(split.val)


def test_singletons_stay_in_train_and_pairs_give_one_to_val():
    files, labels = _data([1, 2, 5])
    split = make_split(files, labels)
    assert "img_0_0.png" in split.train
    assert sum(f.startswith("img_1_") for f in split.val) == 1
    assert sum(f.startswith("img_1_") for f in split.train) == 1


def test_independent_of_row_order():
    a = make_split(*_data([10, 20, 30], seed=1))
    b = make_split(*_data([10, 20, 30], seed=2))
    assert a.val == b.val and a.train == b.train


def test_split_seed_changes_split_and_is_repeatable():
    files, labels = _data([20, 20, 20])
    assert make_split(files, labels, split_seed=1).val == make_split(files, labels, split_seed=1).val
    assert make_split(files, labels, split_seed=1).val != make_split(files, labels, split_seed=2).val


def test_other_identities_do_not_move_an_identity():
    files, labels = _data([20, 20])
    more_files, more_labels = _data([20, 20, 30])
    a = [f for f in make_split(files, labels).val if f.startswith("img_0_")]
    b = [f for f in make_split(more_files, more_labels).val if f.startswith("img_0_")]
    assert a == b


def test_training_seed_cannot_reach_the_split():
    """make_split has no training-seed input; global RNG state must not leak in either."""
    files, labels = _data([15, 25])
    np.random.seed(1)
    a = make_split(files, labels)
    np.random.seed(2)
    import torch

    torch.manual_seed(7)
    assert make_split(files, labels).val == a.val


def test_groups_stay_together():
    files = [f"s{s}_{side}.jpg" for s in range(10) for side in ("left", "right")]
    labels = ["a" if s < 5 else "b" for s in range(10) for _ in range(2)]
    groups = [f"s{s}" for s in range(10) for _ in range(2)]
    split = make_split(files, labels, 0.4, groups=groups, group_column="sighting")
    for s in range(10):
        assert (f"s{s}_left.jpg" in split.val) == (f"s{s}_right.jpg" in split.val)
    assert len(split.val) == 8  # two of five sightings per identity


def test_single_group_identity_stays_in_train_with_a_note():
    split = make_split(["a.jpg", "b.jpg", "c.jpg", "d.jpg"], ["x", "x", "y", "y"], 0.5,
                       groups=["g1", "g1", "g2", "g3"], group_column="sighting")
    assert set(split.train) >= {"a.jpg", "b.jpg"}
    assert split.notes == ["identity 'x': one sighting only, kept in train"]


def test_group_spanning_identities_is_an_error():
    with pytest.raises(DataError, match="group 'g' \\(sighting\\) holds images of several identities"):
        make_split(["a", "b"], ["x", "y"], groups=["g", "g"], group_column="sighting")


def test_round_trip(tmp_path):
    split = make_split(*_data([5, 6]))
    split.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json") == split


def test_resighting_holdout_keeps_rarely_seen_animals_in_training():
    # id0 seen in 2 sightings, id1 in 4, id2 in 8; two photos per sighting.
    files, labels, groups = [], [], []
    for identity, sightings in enumerate([2, 4, 8]):
        for s in range(sightings):
            for photo in range(2):
                files.append(f"{identity}_{s}_{photo}.jpg")
                labels.append(f"id{identity}")
                groups.append(f"{identity}_{s}")
    split = make_split(files, labels, 0.25, 7, groups, "sighting", min_groups=4)
    held = {g for f, g in zip(files, groups) if f in split.val}
    assert not any(g.startswith("0_") for g in held)  # fewer than four sightings: all in training
    assert len([g for g in held if g.startswith("1_")]) == 1  # a quarter of 4, at least one
    assert len([g for g in held if g.startswith("2_")]) == 2  # a quarter of 8
    assert not set(split.train) & set(split.val)  # whole sightings on one side
    train_groups = {g for f, g in zip(files, groups) if f in split.train}
    assert not held & train_groups
    assert split.min_groups == 4
    with pytest.raises(DataError, match="min_groups must be at least 2"):
        make_split(files, labels, min_groups=1)


def test_validation_holds_two_groups_of_an_identity_where_it_has_four_so_it_has_pairs_across_groups():
    # A fifth of 5 groups rounds to 1: with the default min_val_groups=1 no validation pair crosses groups.
    files, labels, groups = [], [], []
    sizes = {"id0": [1, 6, 2, 5, 3], "id1": [4, 4, 4], "id2": [2, 2, 2, 2, 2, 2, 2, 2, 2, 2]}
    for identity, group_sizes in sizes.items():
        for g, size in enumerate(group_sizes):
            for photo in range(size):
                files.append(f"{identity}_{g}_{photo}.jpg")
                labels.append(identity)
                groups.append(f"{identity}#{g}")
    group_of = dict(zip(files, groups))
    id0_sizes = {f"id0#{g}": n for g, n in enumerate(sizes["id0"])}

    def val_groups(split, identity):
        return {group_of[f] for f in split.val if f.startswith(identity)}

    for seed in range(6):
        split = make_split(files, labels, 0.2, seed, groups, "auto", min_val_groups=2)
        held = val_groups(split, "id0")
        assert len(held) == 2  # the random draw and one more
        drawn = val_groups(make_split(files, labels, 0.2, seed, groups, "auto"), "id0")
        assert drawn < held  # the draw stays
        added = held - drawn
        others = set(id0_sizes) - drawn
        assert id0_sizes[added.pop()] == min(id0_sizes[g] for g in others)  # the smallest other group: fewest photos moved
        assert len(val_groups(split, "id1")) == 1  # three groups: two would leave one in training, the rule needs four
        assert len(val_groups(split, "id2")) == 2  # round(0.2 x 10) already
        assert not {group_of[f] for f in split.train} & {group_of[f] for f in split.val}
    assert split.min_val_groups == 2
    with pytest.raises(DataError, match="min_val_groups must be at least 1"):
        make_split(files, labels, min_val_groups=0)


def test_unknown_identities_are_held_out_entirely_and_chosen_by_the_split_seed():
    names = [f"img{i}.png" for i in range(200)]
    labels = [f"cat{i % 20}" for i in range(200)]
    split = make_split(names, labels, 0.2, split_seed=5, unknown_fraction=0.25)
    unknown_ids = {labels[names.index(n)] for n in split.unknown}
    assert len(unknown_ids) == 5 and len(split.unknown) == 50
    seen = {labels[names.index(n)] for n in split.train + split.val}
    assert not unknown_ids & seen
    assert sorted(split.train + split.val + split.unknown) == sorted(names)
    again = make_split(names[::-1], labels[::-1], 0.2, split_seed=5, unknown_fraction=0.25)
    assert again.unknown == split.unknown
    other = make_split(names, labels, 0.2, split_seed=6, unknown_fraction=0.25)
    assert other.unknown != split.unknown
    # one more animal moves at most one identity in or out of the unknown set
    grown = make_split(names + ["new.png", "new2.png"], labels + ["cat99", "cat99"], 0.2, split_seed=5, unknown_fraction=0.25)
    grown_ids = {(labels + ["cat99", "cat99"])[(names + ["new.png", "new2.png"]).index(n)] for n in grown.unknown}
    assert len(grown_ids ^ unknown_ids) <= 2


def test_unknown_fraction_out_of_range_is_an_error():
    with pytest.raises(DataError, match="unknown_fraction"):
        make_split(["a", "b"], ["x", "x"], 0.5, unknown_fraction=1.0)
