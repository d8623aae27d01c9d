"""The ``jaguar-reid`` command: thin wrappers around library calls."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .config import ConfigError, load_config, preset_names
from .data.tables import DataError
from .models.weights import WeightsError

app = typer.Typer(
    help="Re-identify individual animals from photos (Kaggle Jaguar Re-ID format).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_EXPECTED = (DataError, ConfigError, WeightsError, FileNotFoundError)

DataRoot = Annotated[Path, typer.Option("--data-root", help="Folder with train.csv (and test.csv) and the image folders.")]
SetOption = Annotated[Optional[list[str]], typer.Option("--set", help="Override a config value, e.g. --set train.epochs=3 (repeatable).")]


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command("make-demo-data")
def make_demo_data_command(
    out: Annotated[Path, typer.Argument(help="Folder to write the synthetic competition into.")],
    identities: Annotated[int, typer.Option(help="Number of jaguars.")] = 31,
    scale: Annotated[float, typer.Option(help="Scale of the per-identity image counts (1.0: 13..183 images, like the real data).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 0,
) -> None:
    """Write a synthetic jaguar competition: train.csv, test.csv, images, sample submission and answers."""
    from .data.synthetic import make_demo_data

    start = time.time()
    try:
        make_demo_data(out, identities=identities, scale=scale, seed=seed)
    except ValueError as error:
        _fail(str(error))
    typer.echo(f"wrote {out} in {time.time() - start:.1f} s (answers in {out / 'test_labels.csv'})")


def _seeds(seed: Optional[int], seeds: Optional[str]) -> Optional[list[int]]:
    text = seeds or os.environ.get("SEEDS")
    if text:
        try:
            return [int(s) for s in text.replace(",", " ").split()]
        except ValueError:
            _fail(f"--seeds/SEEDS must be integers separated by commas or spaces, got {text!r}")
    return [seed] if seed is not None else None


@app.command()
def train(
    data_root: DataRoot,
    out: Annotated[Path, typer.Option("--out", help="Run folder to write (rerun the same command to resume).")],
    config: Annotated[str, typer.Option("--config", help=f"Preset ({', '.join(preset_names())}) or TOML file.")] = "lite0-cpu",
    seed: Annotated[Optional[int], typer.Option(help="Training seed (the split has its own, split.split_seed).")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Several seeds, e.g. 42,1337,7: one sub-run each (env SEEDS works too).")] = None,
    set_: SetOption = None,
    weights: Annotated[Optional[Path], typer.Option(help="Backbone weights file (.safetensors or .pth) instead of the hub.")] = None,
    train_images: Annotated[Optional[Path], typer.Option(help="Training image folder (default: auto-detected).")] = None,
    metadata: Annotated[Optional[Path], typer.Option(help="Metadata CSV (filename + more columns) for --group-column/--class-column.")] = None,
    group_column: Annotated[Optional[str], typer.Option(help="Keep all images of a group (e.g. sighting) on one side of the split.")] = None,
    class_column: Annotated[Optional[str], typer.Option(help="Train one class per identity and value of this column (e.g. flank).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue a run folder whose config differs from this one.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete the run folder's contents and start again.")] = False,
) -> None:
    """Train a model (validation on a fixed stratified split; best checkpoint by the selection metric)."""
    from .training.trainer import RunFolderError
    from .training.trainer import train as run_training

    try:
        flags = [f"split.metadata_csv={metadata}"] if metadata else []
        flags += [f"split.group_column={group_column}"] if group_column else []
        flags += [f"train.class_column={class_column}"] if class_column else []
        cfg = load_config(config, flags + list(set_ or []))
        summary = run_training(cfg, data_root, out, _seeds(seed, seeds), train_images, str(weights) if weights else None,
                               overwrite=overwrite, resume=resume)
    except (*_EXPECTED, RunFolderError) as error:
        _fail(str(error))
    best = summary.get("best") or summary.get("mean")
    typer.echo(json.dumps(best, indent=1))
    typer.echo(f"run written to {out}")


def _postprocess_overrides(base, flip_tta, query_expansion, rerank, blend, blend_weight, transform):
    update = {k: v for k, v in dict(flip_tta=flip_tta, query_expansion=query_expansion, rerank=rerank, blend=blend,
                                      blend_weight=blend_weight, score_transform=transform).items() if v is not None}
    return base.model_copy(update=update)


@app.command()
def predict(
    runs: Annotated[list[Path], typer.Argument(help="Run folder(s); several (or a multi-seed run) are ensembled.")],
    data_root: DataRoot,
    out: Annotated[Path, typer.Option("--out", help="Submission CSV to write.")] = Path("submission.csv"),
    flip_tta: Annotated[Optional[bool], typer.Option("--flip-tta/--no-flip-tta", help="Average with mirrored images.")] = None,
    query_expansion: Annotated[Optional[bool], typer.Option("--aqe/--no-aqe", help="Average query expansion.")] = None,
    rerank: Annotated[Optional[bool], typer.Option("--rerank/--no-rerank", help="k-reciprocal re-ranking.")] = None,
    blend: Annotated[Optional[bool], typer.Option("--blend/--no-blend", help="Blend raw and re-ranked similarity.")] = None,
    blend_weight: Annotated[Optional[float], typer.Option(help="Weight of the raw similarity in the blend.")] = None,
    transform: Annotated[Optional[str], typer.Option(help="Score transform: clip, none or sigmoid.")] = None,
    test_images: Annotated[Optional[Path], typer.Option(help="Test image folder (default: auto-detected).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Write submission.csv (row_id,similarity) for every pair of test.csv. Defaults come from the first run's config."""
    from .inference.pipeline import predict as run_predict
    from .inference.pipeline import run_config
    from .training.trainer import RunFolderError

    try:
        base = run_config(runs[0]).postprocess
        cfg = _postprocess_overrides(base, flip_tta, query_expansion, rerank, blend, blend_weight, transform)
        path = run_predict(runs, data_root, out, cfg, test_images=test_images, device=device)
    except (*_EXPECTED, RunFolderError, ValueError) as error:
        _fail(str(error))
    typer.echo(f"wrote {path}")


@app.command()
def score(
    submission: Annotated[Path, typer.Argument(help="Submission CSV (row_id,similarity).")],
    test_csv: Annotated[Path, typer.Option("--test-csv", help="The test.csv the submission answers.")],
    labels: Annotated[Path, typer.Option("--labels", help="Answer file: filename,ground_truth for every test image.")],
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the metrics as JSON here.")] = None,
) -> None:
    """Score a submission like the leaderboard (identity-balanced mAP) plus retrieval and pair metrics."""
    from .evaluation.scoring import LEADERBOARD_KEYS, score_submission

    try:
        metrics = score_submission(submission, test_csv, labels)
    except _EXPECTED as error:
        _fail(str(error))
    for key in LEADERBOARD_KEYS:
        value = metrics[key]
        typer.echo(f"{key:>22}  {value:.4f}" if isinstance(value, float) else f"{key:>22}  {value}")
    if json_out:
        result = {k: metrics[k] for k in LEADERBOARD_KEYS}
        tmp = json_out.with_name(json_out.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(json_out)


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    data_root: Annotated[Optional[Path], typer.Option(help="Data root (default: the one the run was trained on).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    report: Annotated[bool, typer.Option("--report/--no-report", help="Also write RUN/report.html.")] = True,
) -> None:
    """Ablation on the run's validation split: raw, + flip TTA, + AQE, + re-rank, + blend, + transform."""
    from .inference.pipeline import evaluate_run, format_table
    from .training.trainer import RunFolderError

    try:
        rows, details = evaluate_run(run, data_root, device=device)
    except (*_EXPECTED, RunFolderError) as error:
        _fail(str(error))
    typer.echo(format_table(rows))
    typer.echo(f"saved {run / 'evaluation.json'}")
    if report:
        from .report.html import write_report

        typer.echo(f"wrote {write_report(run, details=details, ablation_rows=rows)}")


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    data_root: Annotated[Optional[Path], typer.Option(help="Data root (default: the one the run was trained on).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="HTML file (default RUN/report.html).")] = None,
) -> None:
    """Write a self-contained HTML report: curves, per-identity AP, similarity histograms, retrieval grids, 2-D map."""
    from .inference.pipeline import evaluate_run
    from .report.html import write_report
    from .training.trainer import RunFolderError

    try:
        rows, details = evaluate_run(run, data_root)
        path = write_report(run, details=details, ablation_rows=rows, out=out)
    except (*_EXPECTED, RunFolderError) as error:
        _fail(str(error))
    typer.echo(f"wrote {path}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's data, run, submission and report.")] = Path("jaguar_demo"),
    scale: Annotated[float, typer.Option(help="Size of the synthetic competition (1.0 = the real one's size).")] = 0.5,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 6,
    set_: SetOption = None,
) -> None:
    """The whole job offline on a CPU: synthetic data, train lite0-cpu, predict, score, report."""
    from .demo import run_demo

    try:
        run_demo(out, scale=scale, epochs=epochs, overrides=set_ or [])
    except _EXPECTED as error:
        _fail(str(error))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted: rerun the same command to resume", err=True)
        sys.exit(130)
