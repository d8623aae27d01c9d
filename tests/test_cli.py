"""The command line: every subcommand has help; errors are one line with exit code 2."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from jaguar_reid.cli import app

runner = CliRunner()
COMMANDS = ["make-demo-data", "train", "evaluate", "predict", "score", "demo", "report"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_make_demo_data_and_score(tmp_path):
    result = runner.invoke(app, ["make-demo-data", str(tmp_path / "d"), "--identities", "3", "--scale", "0.05"])
    assert result.exit_code == 0, result.output
    root = tmp_path / "d"
    result = runner.invoke(app, ["score", str(root / "sample_submission.csv"), "--test-csv", str(root / "test.csv"),
                                 "--labels", str(root / "test_labels.csv"), "--json", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics) == {"identity_balanced_map", "retrieval_map", "retrieval_top1", "pair_auc", "pair_ap",
                            "n_pairs", "n_queries", "n_identities"}
    assert metrics["pair_auc"] == 0.5  # a constant submission ties everything
    assert "identity_balanced_map" in result.output


@pytest.mark.slow
def test_errors_are_one_line_with_exit_code_2(tmp_path):
    result = runner.invoke(app, ["train", "--data-root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path / 'nowhere'}: data root not found"
    result = runner.invoke(app, ["train", "--data-root", str(tmp_path), "--out", str(tmp_path / "r"), "--set", "train.epochs=x"])
    assert result.exit_code == 2 and result.output.count("\n") == 1


def test_seeds_from_environment(tmp_path, monkeypatch):
    from jaguar_reid.cli import common as cli

    monkeypatch.setenv("SEEDS", "42 1337")
    assert cli.seed_list(None, None) == [42, 1337]
    assert cli.seed_list(None, "1,2,3") == [1, 2, 3]
    monkeypatch.delenv("SEEDS")
    assert cli.seed_list(7, None) == [7] and cli.seed_list(None, None) is None


def test_score_rejects_bad_submission(tmp_path):
    runner.invoke(app, ["make-demo-data", str(tmp_path / "d"), "--identities", "2", "--scale", "0.05"])
    root = tmp_path / "d"
    frame = pd.read_csv(root / "sample_submission.csv").iloc[1:]
    frame.to_csv(tmp_path / "short.csv", index=False)
    result = runner.invoke(app, ["score", str(tmp_path / "short.csv"), "--test-csv", str(root / "test.csv"),
                                 "--labels", str(root / "test_labels.csv")])
    assert result.exit_code == 2 and "row_id(s) of" in result.output and "missing" in result.output
