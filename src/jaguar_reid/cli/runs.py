"""Commands on data and trained runs: make-demo-data, train, predict, score, evaluate, report, demo, export, config."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..config import preset_names
from ..errors import UserError
from .common import (
    Backend,
    BackendOption,
    DataRoot,
    Device,
    ExportFormat,
    SetOption,
    app,
    config_app,
    fail,
    seed_list,
    typed,
)


@app.command("make-demo-data")
def make_demo_data_command(
    out: Annotated[Path, typer.Argument(help="Folder to write the synthetic competition into.")],
    identities: Annotated[int, typer.Option(help="Number of jaguars.")] = 31,
    scale: Annotated[float, typer.Option(help="Scale of the per-identity image counts (1.0: 13..183 images, like the real data).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 0,
) -> None:
    """Write a synthetic jaguar competition: train.csv, test.csv, images, sample submission and answers."""
    from ..data.synthetic import make_demo_data

    start = time.time()
    try:
        make_demo_data(out, identities=identities, scale=scale, seed=seed)
    except ValueError as error:
        fail(str(error))
    typer.echo(f"wrote {out} in {time.time() - start:.1f} s (answers in {out / 'test_labels.csv'})")


@app.command()
def train(
    data_root: DataRoot,
    out: Annotated[Path, typer.Option("--out", help="Run folder to write (rerun the same command to resume).")],
    config: Annotated[str, typer.Option("--config", help=f"Preset ({', '.join(preset_names())}) or TOML file.")] = "lite0-cpu",
    seed: Annotated[Optional[int], typer.Option(help="Training seed (the split has its own, split.split_seed).")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Several seeds, e.g. 42,1337,7: one sub-run each (env SEEDS too).")] = None,
    set_: SetOption = None,
    device: Device = None,
    weights: Annotated[Optional[Path], typer.Option(help="Backbone weights file (.safetensors or .pth) instead of the hub.")] = None,
    train_images: Annotated[Optional[Path], typer.Option(help="Training image folder (default: auto-detected).")] = None,
    metadata: Annotated[Optional[Path], typer.Option(help="Metadata CSV (filename + more columns) for the two options below.")] = None,
    group_column: Annotated[Optional[str], typer.Option(help="Keep all images of a group (e.g. sighting) on one side of the split.")] = None,
    class_column: Annotated[Optional[str], typer.Option(help="Train one class per identity and value of this column (e.g. flank).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a run folder whose config differs from this one.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Delete the run folder's contents and start again.")] = False,
) -> None:
    """Train a model (validation on a fixed split; the best checkpoint by the selection metric)."""
    from ..config import load_config
    from ..runs import Run
    from ..training.trainer import train as run_training

    cfg = load_config(config, list(set_ or [])).with_overrides(typed(
        split__metadata_csv=str(metadata) if metadata else None, split__group_column=group_column,
        train__class_column=class_column, train__device=device))
    complete = not overwrite and _finished_with(Run(out), cfg)
    summary = run_training(cfg, data_root, out, seed_list(seed, seeds), train_images, str(weights) if weights else None,
                           overwrite=overwrite, resume=resume)
    from ..training.summary import format_summary

    if complete:
        typer.echo(f"{out}: this run was already complete (rerun with --overwrite to train again)")
    typer.echo(format_summary(summary, out))


def _finished_with(run, cfg) -> bool:
    """True when ``run`` is a finished run of exactly ``cfg`` (a rerun then trains nothing)."""
    try:
        return run.summary is not None and run.config.same_run_as(cfg)
    except UserError:  # not a readable run: training decides what to do with the folder
        return False


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
    set_: SetOption = None,
    test_images: Annotated[Optional[Path], typer.Option(help="Test image folder (default: auto-detected).")] = None,
    device: Device = None,
    backend: BackendOption = Backend.auto,
) -> None:
    """Write submission.csv (row_id,similarity) for every pair of test.csv. Defaults come from the first run's config."""
    from ..devices import resolve_device
    from ..inference.embedder import Embedder
    from ..runs import Run
    from ..tasks.predict import predict as run_predict

    cfg = Run(runs[0]).config.with_overrides(list(set_ or [])).with_overrides(typed(
        postprocess__flip_tta=flip_tta, postprocess__query_expansion=query_expansion, postprocess__rerank=rerank,
        postprocess__blend=blend, postprocess__blend_weight=blend_weight, postprocess__score_transform=transform))
    device = str(resolve_device(device or cfg.train.device))
    embedder = Embedder.from_runs(runs, device=device, flip_tta=cfg.postprocess.flip_tta, backend=backend.value)
    path = run_predict(runs, data_root, out, cfg.postprocess, test_images=test_images, device=device, embedder=embedder)
    typer.echo(f"wrote {path}")


@app.command()
def score(
    submission: Annotated[Path, typer.Argument(help="Submission CSV (row_id,similarity).")],
    test_csv: Annotated[Path, typer.Option("--test-csv", help="The test.csv the submission answers.")],
    labels: Annotated[Path, typer.Option("--labels", help="Answer file: filename,ground_truth for every test image.")],
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the metrics as JSON here.")] = None,
) -> None:
    """Score a submission like the leaderboard (identity-balanced mAP) plus retrieval and pair metrics."""
    from ..evaluation.scoring import LEADERBOARD_KEYS, score_submission
    from ..files import atomic_write_json

    metrics = score_submission(submission, test_csv, labels)
    for key in LEADERBOARD_KEYS:
        value = metrics[key]
        typer.echo(f"{key:>22}  {value:.4f}" if isinstance(value, float) else f"{key:>22}  {value}")
    if json_out:
        atomic_write_json(json_out, {k: metrics[k] for k in LEADERBOARD_KEYS})


def _evaluate(run_path: Path, data_root: Optional[Path], device: Optional[str], overrides: list[str], backend):
    from ..devices import resolve_device
    from ..runs import Run
    from ..tasks.evaluate import evaluate_run

    run = Run(run_path)
    cfg = run.config.with_overrides(overrides)
    evaluation = evaluate_run(run, data_root, device=str(resolve_device(device or cfg.train.device)), postprocess=cfg.postprocess,
                              backend=backend.value)
    return run, cfg, evaluation


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    data_root: Annotated[Optional[Path], typer.Option(help="Data root (default: the one the run was trained on).")] = None,
    set_: SetOption = None,
    device: Device = None,
    backend: BackendOption = Backend.auto,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Also write RUN/report.html.")] = True,
) -> None:
    """Ablation on the run's validation split (raw, + flip TTA, + AQE, + re-rank, ...) and open-set calibration."""
    from ..devices import resolve_device
    from ..evaluation.evaluate import format_table

    trained, cfg, evaluation = _evaluate(run, data_root, device, list(set_ or []), backend)
    typer.echo(format_table(evaluation.rows, marked=evaluation.submission_step))
    typer.echo("(* = the configured chain: what predict writes)")
    refitted = [(m, v) for m, v in zip(trained.members, trained.validated_members) if m.path != v.path]
    for model, validated in refitted:
        typer.echo(f"scored {validated.path}, trained without these validation photos; the run's model, {model.path}, "
                   "was then trained on every photo (train.refit), so it has seen them")
    for line in evaluation.advice(cfg.postprocess):
        typer.echo(line)
    if evaluation.background:
        typer.echo("background diagnostic (raw similarity, no flip TTA): how much the background alone can match")
        typer.echo(format_table(list(evaluation.background.items())))
    typer.echo(f"saved {run / 'evaluation.json'}")
    from ..evaluation.open_set import format_open_set
    from ..tasks.calibrate import calibrate_run

    typer.echo(format_open_set(calibrate_run(trained, data_root, device=str(resolve_device(device or cfg.train.device)),
                                             backend=backend.value)))
    typer.echo(f"saved {run / 'open_set.json'} (the threshold and probabilities identify uses)")
    if report:
        from ..report.html import write_report

        typer.echo(f"wrote {write_report(trained, evaluation)}")


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    data_root: Annotated[Optional[Path], typer.Option(help="Data root (default: the one the run was trained on).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="HTML file (default RUN/report.html).")] = None,
    set_: SetOption = None,
    device: Device = None,
    backend: BackendOption = Backend.auto,
) -> None:
    """Write a self-contained HTML report: curves, per-identity AP, similarity histograms, retrieval examples, 2-D map."""
    from ..report.html import write_report

    trained, _, evaluation = _evaluate(run, data_root, device, list(set_ or []), backend)
    typer.echo(f"wrote {write_report(trained, evaluation, out=out)}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's data, run, submission and report.")] = Path("jaguar_demo"),
    scale: Annotated[float, typer.Option(help="Size of the synthetic competition (1.0 = the real one's size).")] = 0.5,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs (default: the preset's).")] = None,
    config: Annotated[str, typer.Option("--config", help="Preset or TOML file to train.")] = "lite0-cpu",
    set_: SetOption = None,
) -> None:
    """The whole job offline on a CPU: synthetic data, train lite0-cpu, predict, score, report."""
    from ..tasks.demo import run_demo

    run_demo(out, scale=scale, epochs=epochs, overrides=set_ or [], config=config)


@app.command("export")
def export_model(
    run: Annotated[list[Path], typer.Argument(help="Run folder(s); several (or a multi-seed run) are ensembled.")],
    out: Annotated[Path, typer.Option("--out", help="Model file to write.")],
    format_: Annotated[ExportFormat, typer.Option("--format", help="Export format.")] = ExportFormat.onnx,
    flip_tta: Annotated[Optional[bool], typer.Option("--flip-tta/--no-flip-tta", help="Include flip TTA in the graph (default: the run's).")] = None,
) -> None:
    """Export a trained run as one model file: images (N, 3, H, W) in [0, 1] to L2-normalised embeddings."""
    from ..inference.onnx import export_onnx

    path = export_onnx(run, out, flip_tta=flip_tta)
    typer.echo(f"wrote {path}")


@config_app.command("show")
def config_show(
    preset: Annotated[str, typer.Argument(help=f"Preset ({', '.join(preset_names())}) or TOML file.")] = "lite0-cpu",
    set_: SetOption = None,
) -> None:
    """Print the resolved config as TOML, with a comment on each key."""
    from ..config import describe_config, load_config

    typer.echo(describe_config(load_config(preset, list(set_ or []))))


@config_app.command("presets")
def config_presets() -> None:
    """List the shipped presets."""
    from ..config import load_config

    for name in preset_names():
        typer.echo(f"{name:18} {load_config(name).model.backbone}")
