"""The newcomer's path, command by command: every mistake is one clear line (exit code 2), nothing
is left half-written, and the corrected command simply works."""

import os
import stat
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from jaguar_reid.cli import app
from jaguar_reid.data.synthetic import make_demo_data

runner = CliRunner()
QUICK = ["--config", "lite0-finetune", "--set", "model.backbone=resnet18", "--set", "model.pretrained=none",
         "--set", "data.image_size=32", "--set", "train.batch_size=8", "--set", "train.images_per_identity=2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_demo_data(tmp_path_factory.mktemp("newcomer") / "data", identities=4, scale=0.15, seed=5)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("newcomer-run") / "run"
    result = runner.invoke(app, ["train", "--data-root", str(data), "--out", str(out), *QUICK, "--set", "train.epochs=1"])
    assert result.exit_code == 0, result.output
    return out


def _one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.slow
def test_a_failed_train_leaves_nothing_and_the_fix_just_runs(data, tmp_path):
    out = tmp_path / "runs" / "x"
    _one_line_error(runner.invoke(app, ["train", "--data-root", str(tmp_path / "dta"), "--out", str(out), *QUICK]),
                    "dta: data root not found")
    (tmp_path / "empty").mkdir()
    _one_line_error(runner.invoke(app, ["train", "--data-root", str(tmp_path / "empty"), "--out", str(out), *QUICK]),
                    "train.csv: file not found")
    assert not out.exists()
    result = runner.invoke(app, ["train", "--data-root", str(data), "--out", str(out), *QUICK, "--set", "train.epochs=0"])
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_a_run_interrupted_before_its_first_epoch_is_not_a_run(data, tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    (out / "config.toml").write_text('name = "something else"\n')  # what an interrupted first epoch leaves
    result = runner.invoke(app, ["train", "--data-root", str(data), "--out", str(out), *QUICK, "--set", "train.epochs=0"])
    assert result.exit_code == 0, result.output


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_devices_are_checked_before_anything_is_written(data, run, tmp_path):
    out = tmp_path / "x"
    _one_line_error(runner.invoke(app, ["train", "--data-root", str(data), "--out", str(out), *QUICK,
                                        "--set", "train.device=cuda"]), "device 'cuda' is not available on this machine")
    assert not out.exists()
    _one_line_error(runner.invoke(app, ["train", "--data-root", str(data), "--out", str(out), *QUICK, "--device", "gpu"]),
                    "unknown device 'gpu'", "cpu")
    for command in ("predict", "evaluate"):
        extra = ["--data-root", str(data), "--out", str(tmp_path / "s.csv")] if command == "predict" else []
        _one_line_error(runner.invoke(app, [command, str(run), *extra, "--device", "gpu"]), "unknown device 'gpu'")
        _one_line_error(runner.invoke(app, [command, str(run), *extra, "--device", "cuda"]), "not available on this machine")
    assert not (tmp_path / "s.csv").exists()


def test_a_missing_run_folder_is_named(tmp_path):
    nope = tmp_path / "runs" / "nope"
    _one_line_error(runner.invoke(app, ["evaluate", str(nope)]), f"{nope}: run folder not found")
    _one_line_error(runner.invoke(app, ["report", str(nope)]), f"{nope}: run folder not found")


@pytest.mark.slow
def test_a_misspelt_key_gets_a_suggestion_and_config_show_lists_keys(data, tmp_path):
    _one_line_error(runner.invoke(app, ["train", "--data-root", str(data), "--out", str(tmp_path / "x"), "--set", "train.epoch=2"]),
                    "unknown key train.epoch", "did you mean train.epochs?")
    shown = runner.invoke(app, ["config", "show", "lite0-cpu", "--set", "train.epochs=3"])
    assert shown.exit_code == 0 and "epochs = 3" in shown.output and "# training epochs" in shown.output
    _one_line_error(runner.invoke(app, ["config", "show", "nope"]), "unknown config 'nope'")


def test_help_does_not_import_torch():
    code = ("import sys; sys.argv = ['jaguar-reid', '--help']\n"
            "from jaguar_reid import cli\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "train" in result.stdout


@pytest.mark.slow
def test_train_ends_with_a_labelled_summary_and_a_rerun_says_complete(data, run):
    result = runner.invoke(app, ["train", "--data-root", str(data), "--out", str(run), *QUICK, "--set", "train.epochs=1",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "already complete" in result.output
    assert "kept epoch" in result.output and "identity-balanced mAP" in result.output and "untrained" in result.output
    assert "{" not in result.output  # no raw JSON


def test_help_fits_80_columns_without_python_types():
    result = subprocess.run([sys.executable, "-m", "jaguar_reid", "train", "--help"], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 0
    assert "--class-column" in result.stdout and "--group-column" in result.stdout
    assert "list[str]" not in result.stdout and "…" not in result.stdout


@pytest.mark.slow
def test_checkpoints_are_readable_like_every_other_file(run):
    from jaguar_reid.runs import Run

    model = Run(run).members[0].path  # the kept stage of the default's two
    for path in (model / "best.safetensors", model / "last.safetensors", model / "last_state.pt", run / "config.toml"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o044 == 0o044, (path, oct(mode))
