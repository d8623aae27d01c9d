"""The catalogue's commands end to end, as a field team types them."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from jaguar_reid.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command", [["catalog", "create"], ["catalog", "add"], ["catalog", "decide"], ["catalog", "export"],
                                     ["catalog", "stats"], ["catalog", "bind"], ["catalog", "upgrade"], ["identify"], ["export"],
                                     ["serve"]])
def test_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def _ok(args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_catalogue_commands(tmp_path, catalog_run, demo_root):
    db, test_dir = tmp_path / "catalog.db", demo_root / "test" / "test"
    assert "'new individual' below score" in _ok(["catalog", "create", db, "--run", catalog_run, "--device", "cpu"])
    assert "of known individuals" in _ok(["catalog", "add", db, "--images", demo_root / "train" / "train",
                                          "--labels", demo_root / "train.csv", "--who", "ana"])
    output = _ok(["identify", db, test_dir, "--top-k", "2", "--json", tmp_path / "ids.json"])
    results = json.loads((tmp_path / "ids.json").read_text())
    assert len(results) == len(list(test_dir.glob("*.png"))) and all(len(r["candidates"]) == 2 for r in results)
    first = results[0]  # the text says what the JSON says
    assert output.startswith(f"{first['photo']}: " + ("known individual " + first["individual"] if first["verdict"] == "known"
                                                      else "NEW INDIVIDUAL"))

    photo = sorted(test_dir.glob("*.png"))[0]
    _ok(["catalog", "add", db, "--images", photo])
    assert "is the new individual Zorro" in _ok(["catalog", "decide", db, photo, "--new", "Zorro", "--who", "ana"])
    result = runner.invoke(app, ["catalog", "decide", str(db), str(photo), "--new", "Zorro"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "already exists" in result.output
    stats = json.loads(_ok(["catalog", "stats", db, "--json"]))
    assert stats["individuals"] == 7 and stats["decisions"] == 1 and stats["photos_queued"] == 0
    assert "individuals        7" in _ok(["catalog", "stats", db])
    assert "train.csv" in _ok(["catalog", "export", db, "--out", tmp_path / "exported"])
    assert (tmp_path / "exported" / "train.csv").read_text().count("Zorro") == 1


def test_errors_are_one_line_without_a_traceback(tmp_path):
    for args in (["identify", "postgresql://u:secret@127.0.0.1:9/x", str(tmp_path)],
                 ["catalog", "stats", str(tmp_path / "none.db")],
                 ["catalog", "decide", str(tmp_path / "none.db"), "x.png", "--reject"]):
        result = subprocess.run([sys.executable, "-m", "jaguar_reid", *args], capture_output=True, text=True,
                                env={**os.environ, "TQDM_DISABLE": "1"})
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("error: ") and "secret" not in result.stderr


@pytest.mark.slow
def test_serve_refuses_an_open_address_without_a_token(tmp_path, catalog_run):
    from jaguar_reid.catalog import Catalog

    Catalog.create(tmp_path / "c.db", [catalog_run], device="cpu")
    result = runner.invoke(app, ["serve", str(tmp_path / "c.db"), "--host", "0.0.0.0"], env={"JAGUAR_REID_TOKEN": ""})
    assert result.exit_code == 2 and "needs --token" in result.output
