"""The validation split: stratified per identity, optionally grouped, seeded by ``split_seed`` only.

The split depends on the data's content, ``split_seed``, the fraction and the grouping; never on
the training seed or the row order of train.csv. Each identity is shuffled by its own generator
(seeded from ``split_seed`` and the identity's name), so adding one animal leaves the others'
splits unchanged.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Config
from ..files import atomic_write_json
from .competition import Competition
from .groups import AutoGroups
from .tables import DataError


@dataclass
class Split:
    """A validation split: training, validation and held-out (unknown) files, groups and notes."""
    train: list[str]
    val: list[str]
    split_seed: int
    val_fraction: float
    group_column: str | None = None
    min_groups: int = 2
    min_val_groups: int = 1
    notes: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    unknown_fraction: float = 0.0
    groups: dict[str, str] = field(default_factory=dict)  # filename -> group, when the split is grouped

    def groups_of(self, filenames) -> list[str] | None:
        """Each file's group (sighting, or automatic near-duplicate group); None for an ungrouped split."""
        return [self.groups[name] for name in filenames] if self.groups else None

    def save(self, path: str | Path) -> None:
        """Write the split as JSON (atomically)."""
        atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> Split:
        """Read a split written by ``save``."""
        return cls(**json.loads(Path(path).read_text()))


def _identity_rng(split_seed: int, identity: str) -> np.random.Generator:
    return np.random.default_rng([split_seed, zlib.crc32(identity.encode("utf-8"))])


def _check_split_settings(val_fraction: float, min_groups: int, unknown_fraction: float, min_val_groups: int) -> None:
    if min_groups < 2:
        raise DataError(f"min_groups must be at least 2, got {min_groups}")
    if min_val_groups < 1:
        raise DataError(f"min_val_groups must be at least 1, got {min_val_groups}")
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if not 0.0 <= unknown_fraction < 1.0:
        raise DataError(f"unknown_fraction must be at least 0 and below 1, got {unknown_fraction}")


def make_split(
    filenames,
    labels,
    val_fraction: float = 0.2,
    split_seed: int = 314159,
    groups=None,
    group_column: str | None = None,
    min_groups: int = 2,
    unknown_fraction: float = 0.0,
    min_val_groups: int = 1,
) -> Split:
    """Stratified split: per identity, round(fraction x groups) groups go to validation.

    Identities with fewer than ``min_groups`` groups stay in train; the others put at least one
    group in validation and keep at least one in train. Without ``groups`` each image is its own
    group. A group must not span identities.

    Pairs across groups: an identity with one group in validation gives the score on other groups'
    pairs (the honest one) nothing, and with a fifth held out that is every identity with fewer
    than 8 groups (on the development sets' automatic groups, all but 11 to 16 of 82 cows and 2 to 4
    of 237 nyala). With ``min_val_groups=2`` an identity with at least four groups puts at least two
    in validation: after its random draw, the smallest of its other groups, so validation grows by
    as few photos as it can. Not the default: measured from train.csv alone it cost cattle 0.02
    to 0.05 across held-out sightings (fewer photos trained, another head epoch to start from).

    Re-sighting hold-out: with groups = sightings, ``min_groups=4`` and ``val_fraction=0.25``,
    about a quarter of the sightings of every animal seen at least four times are held out, so
    validation asks what re-identification asks: is this new sighting one of our known animals?

    Open set: ``unknown_fraction`` of the identities (chosen by ``split_seed``) are held out
    entirely in ``unknown``: never trained on, they stand for animals a catalogue has never seen
    when the "new individual" threshold is calibrated.
    """
    _check_split_settings(val_fraction, min_groups, unknown_fraction, min_val_groups)
    frame = pd.DataFrame({"filename": list(filenames), "identity": list(labels)})
    frame["group"] = frame["filename"] if groups is None else [str(g) for g in groups]
    spans = frame.groupby("group")["identity"].nunique()
    if (spans > 1).any():
        bad = spans[spans > 1].index[0]
        raise DataError(f"group {bad!r} ({group_column or 'group'}) holds images of several identities")

    unknown_identities = _unknown_identities(sorted(frame["identity"].unique()), unknown_fraction, split_seed)
    unknown = frame.loc[frame["identity"].isin(unknown_identities), "filename"].tolist()
    frame = frame[~frame["identity"].isin(unknown_identities)]
    train, val, notes = [], [], []
    for identity, members in sorted(frame.groupby("identity"), key=lambda item: item[0]):
        group_names = np.array(sorted(members["group"].unique()), dtype=object)
        if len(group_names) < min_groups:
            if len(members) >= 2 and min_groups == 2:
                notes.append(f"identity {identity!r}: one {group_column or 'group'} only, kept in train")
            train.extend(members["filename"])
            continue
        n_val = int(np.clip(round(val_fraction * len(group_names)), 1, len(group_names) - 1))
        shuffled = list(_identity_rng(split_seed, identity).permutation(group_names))
        chosen = shuffled[:n_val]
        if n_val < min_val_groups <= len(group_names) // 2:
            sizes = members["group"].value_counts()
            chosen += sorted(shuffled[n_val:], key=lambda group: sizes[group])[:min_val_groups - n_val]  # stable: ties stay shuffled
        in_val = members["group"].isin(set(chosen))
        val.extend(members.loc[in_val, "filename"])
        train.extend(members.loc[~in_val, "filename"])
    return Split(
        train=sorted(train),
        val=sorted(val),
        split_seed=split_seed,
        val_fraction=val_fraction,
        group_column=group_column,
        min_groups=min_groups,
        min_val_groups=min_val_groups,
        notes=notes,
        unknown=sorted(unknown),
        unknown_fraction=unknown_fraction,
        groups={} if groups is None else dict(zip(frame["filename"], frame["group"])),
    )


def _unknown_identities(identities: list[str], fraction: float, split_seed: int) -> set[str]:
    """round(fraction x identities) identities with the lowest per-identity draw (adding an animal
    moves at most one other in or out)."""
    count = round(fraction * len(identities))
    if fraction > 0 and count == 0:
        count = 1
    draws = {identity: _identity_rng(split_seed, identity).random() for identity in identities}
    return set(sorted(identities, key=lambda identity: (draws[identity], identity))[:count])


def read_metadata(metadata_csv: str | Path, *columns: str) -> pd.DataFrame:
    """A metadata CSV (``filename`` plus any columns) as strings, empty cells as ""; ``columns``
    (and ``filename``) must be there."""
    path = Path(metadata_csv)
    if not path.is_file():
        raise DataError(f"{path}: metadata file not found")
    meta = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in ("filename", *columns):
        if column not in meta.columns:
            raise DataError(f"{path}: missing column {column!r} (found {','.join(meta.columns)})")
    return meta


def read_metadata_column(metadata_csv: str | Path, group_column: str, filenames) -> list[str]:
    """One column's value for each filename (a sighting, a flank), from a metadata CSV joined on ``filename``."""
    path = Path(metadata_csv)
    meta = read_metadata(path, group_column)
    lookup = dict(zip(meta["filename"], meta[group_column]))
    missing = [name for name in filenames if name not in lookup]
    if missing:
        raise DataError(f"{path}: no {group_column!r} for {len(missing)} image(s), first {missing[0]!r}")
    return [lookup[name] for name in filenames]


def metadata_column(cfg: Config, setting: str, column: str, filenames) -> list[str]:
    """Values of a metadata column named by ``setting`` (e.g. split.group_column) for ``filenames``."""
    if not cfg.split.metadata_csv:
        raise DataError(f"{setting} is set but split.metadata_csv is not")
    return read_metadata_column(cfg.split.metadata_csv, column, filenames)


AUTO_GROUPS = "auto (near-duplicates)"


def build_split(cfg: Config, competition: Competition, auto_groups: AutoGroups | None = None) -> Split:
    """The validation split of ``cfg.split``: grouped by the metadata's group column, else by
    ``auto_groups`` (near-duplicates) when given, else image by image."""
    files, labels = competition.train["filename"].tolist(), competition.train["ground_truth"].tolist()
    groups, group_column = None, cfg.split.group_column
    if cfg.split.group_column:
        groups = metadata_column(cfg, "split.group_column", cfg.split.group_column, files)
    elif auto_groups is not None:
        groups, group_column = auto_groups.groups, AUTO_GROUPS
    split = make_split(files, labels, cfg.split.val_fraction, cfg.split.split_seed, groups, group_column,
                       cfg.split.min_groups, cfg.split.unknown_fraction, cfg.split.min_val_groups)
    if auto_groups is not None and not cfg.split.group_column:
        split.notes.insert(0, f"automatic groups: {len(files)} photos in {auto_groups.count} groups of near-duplicates "
                              f"(cosine similarity above {auto_groups.threshold:.4f}, the {cfg.split.auto_group_quantile} "
                              "quantile of different identities' pairs)")
    train_ids = set(competition.labels(split.train))
    if len(train_ids) < 2:
        raise DataError(f"{competition.root / 'train.csv'}: training needs at least two identities, found {len(train_ids)}")
    val_counts = np.unique(competition.labels(split.val), return_counts=True)[1]
    if not (val_counts >= 2).any():
        raise DataError(
            f"{competition.root / 'train.csv'}: no identity has two images in the validation split "
            f"(need identities with at least {math.ceil(2 / cfg.split.val_fraction)} images, or a larger split.val_fraction)"
        )
    return split
