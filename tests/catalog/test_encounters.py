"""Grouping an import's photos into encounters: by folder, by EXIF time, or by a metadata column."""

import pytest

from jaguar_reid.catalog.encounters import EncounterRule, group_encounters
from jaguar_reid.errors import DataError


def test_rules_parse_and_bad_ones_are_one_line():
    assert EncounterRule.parse("folder") == EncounterRule("folder")
    assert EncounterRule.parse("time:10") == EncounterRule("time", minutes=10.0)
    assert EncounterRule.parse("column:sighting") == EncounterRule("column", column="sighting")
    for text, message in [("time:ten", "time needs a number of minutes"), ("time:0", "above 0"),
                          ("flank", "expected one of folder, time:MINUTES, column:NAME"), ("column:", "expected one of")]:
        with pytest.raises(DataError, match=message):
            EncounterRule.parse(text)


def test_by_folder_each_folder_is_an_encounter_of_this_import():
    names = ["cam7/a.jpg", "cam7/b.jpg", "cam9/c.jpg", "d.jpg"]
    grouping = group_encounters(EncounterRule("folder"), names, [None] * 4, {}, "batch1")
    assert grouping.encounters == ["batch1/cam7", "batch1/cam7", "batch1/cam9", "batch1/."]
    assert group_encounters(None, names, [None] * 4, {}, "batch1").encounters == [None] * 4  # each its own


def test_by_time_splits_a_folder_at_gaps_longer_than_the_minutes_and_counts_untimed_photos():
    names = ["cam7/1.jpg", "cam7/2.jpg", "cam7/3.jpg", "cam7/4.jpg", "cam9/5.jpg", "cam7/6.jpg"]
    taken = ["2026-11-30T05:00:00", "2026-11-30T05:04:00", "2026-11-30T05:30:00", "2026-11-30T05:36:00",
             "2026-11-30T05:01:00", None]
    grouping = group_encounters(EncounterRule("time", minutes=10), names, taken, {}, "b")
    assert grouping.encounters == ["b/cam7#1", "b/cam7#1", "b/cam7#2", "b/cam7#2", "b/cam9#1", None]
    assert grouping.notes == ["1 photo(s) have no EXIF time: each is its own encounter"]
    shuffled = [4, 2, 0, 5, 1, 3]  # the order photos arrive in does not matter, their times do
    again = group_encounters(EncounterRule("time", minutes=10), [names[i] for i in shuffled], [taken[i] for i in shuffled], {}, "b")
    assert again.encounters == [grouping.encounters[i] for i in shuffled]


def test_by_column_keeps_the_teams_names_and_needs_the_column():
    metadata = {"a.jpg": {"sighting": "S12"}, "b.jpg": {"sighting": "S12"}, "c.jpg": {"sighting": ""}}
    grouping = group_encounters(EncounterRule("column", column="sighting"), ["a.jpg", "b.jpg", "c.jpg"], [None] * 3,
                                metadata, "b", "meta.csv")
    assert grouping.encounters == ["S12", "S12", None] and "1 photo(s) have no 'sighting' value" in grouping.notes[0]
    with pytest.raises(DataError, match="meta.csv: no column 'visit'"):
        group_encounters(EncounterRule("column", column="visit"), ["a.jpg"], [None], metadata, "b", "meta.csv")
    with pytest.raises(DataError, match="needs --metadata CSV"):
        group_encounters(EncounterRule("column", column="sighting"), ["a.jpg"], [None], {}, "b", None)
