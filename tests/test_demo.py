import pytest

"""The demo runs the whole job and ends with a catalogue that identifies the test photos."""

from jaguar_reid.catalog import Catalog
from jaguar_reid.tasks.demo import run_demo


@pytest.mark.slow
def test_demo_ends_with_a_catalogue_and_open_set_numbers(tmp_path, capsys):
    out = tmp_path / "demo"
    result = run_demo(out, scale=0.15, epochs=2, overrides=["data.image_size=64", "train.feature_views=1"])
    printed = capsys.readouterr().out
    assert "open set on the test photos" in printed and "new animals called new" in printed
    metrics = result["open_set"]["metrics"]
    assert metrics["n_known_queries"] > 0 and metrics["n_unknown_queries"] > 0  # held-out animals are new ones
    assert len(result["open_set"]["results"]) == metrics["n_known_queries"] + metrics["n_unknown_queries"]
    stats = Catalog(out / "catalog.db").stats()
    assert metrics["rank1"] > 2 / stats["individuals"]  # the catalogue's first guess beats chance twofold
    assert stats["photos_known"] > 0 and stats["photos_queued"] > 0  # the held-out animals' photos wait for review
    assert stats["individuals"] < 31
    assert (out / "report.html").exists() and (out / "submission.csv").exists()
