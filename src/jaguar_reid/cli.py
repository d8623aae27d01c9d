"""The ``jaguar-reid`` command: thin wrappers around library calls.

Heavy libraries (torch, timm, pandas) are imported inside the commands that need them, so
``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .config import preset_names
from .errors import UserError

app = typer.Typer(
    help="Re-identify individual animals from photos (Kaggle Jaguar Re-ID format).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"max_content_width": 100, "help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Show presets and every config key with its default.", no_args_is_help=True)
app.add_typer(config_app, name="config")
catalog_app = typer.Typer(help="A catalogue of known individuals: create, add photos, decide, export, stats.",
                          no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")

DataRoot = Annotated[Path, typer.Option("--data-root", help="Folder with train.csv (and test.csv) and the image folders.")]
SetOption = Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE",
                                                       help="Override a config value, e.g. --set train.epochs=3 (repeatable).")]
Device = Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N or mps (default: the config's).")]
CatalogLocation = Annotated[str, typer.Argument(metavar="CATALOG", help="Catalogue: a SQLite file (catalog.db) or a database URL.")]
Engine = Annotated[str, typer.Option(help="Inference engine: torch, onnx (onnxruntime, CPU) or auto (onnx on the CPU).")]
Who = Annotated[Optional[str], typer.Option("--who", help="Who made the change (default: your user name).")]


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _seeds(seed: Optional[int], seeds: Optional[str]) -> Optional[list[int]]:
    text = seeds or os.environ.get("SEEDS")
    if text:
        try:
            return [int(s) for s in text.replace(",", " ").split()]
        except ValueError:
            _fail(f"--seeds/SEEDS must be integers separated by commas or spaces, got {text!r}")
    return [seed] if seed is not None else None


def _typed(**values) -> dict:
    """Typed CLI flags as config overrides (``section.key`` -> value), leaving out flags not given."""
    return {key.replace("__", "."): value for key, value in values.items() if value is not None}


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
    from .config import load_config
    from .runs import Run
    from .training.trainer import train as run_training

    try:
        cfg = load_config(config, list(set_ or [])).with_overrides(_typed(
            split__metadata_csv=str(metadata) if metadata else None, split__group_column=group_column,
            train__class_column=class_column, train__device=device))
        complete = not overwrite and _finished_with(Run(out), cfg)
        summary = run_training(cfg, data_root, out, _seeds(seed, seeds), train_images, str(weights) if weights else None,
                               overwrite=overwrite, resume=resume)
    except UserError as error:
        _fail(str(error))
    from .training.summary import format_summary

    if complete:
        typer.echo(f"{out}: this run was already complete (rerun with --overwrite to train again)")
    typer.echo(format_summary(summary, out))


def _engine(engine: str) -> str:
    if engine not in ("torch", "onnx", "auto"):
        _fail(f"--engine must be torch, onnx or auto, got {engine!r}")
    return engine


def _open_catalog(location: str, device: Optional[str], engine: str):
    from .catalog import Catalog

    return Catalog(location, device=device or "auto", engine=_engine(engine))


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
    engine: Engine = "auto",
) -> None:
    """Write submission.csv (row_id,similarity) for every pair of test.csv. Defaults come from the first run's config."""
    from .devices import resolve_device
    from .inference.embedder import Embedder
    from .inference.pipeline import predict as run_predict
    from .runs import Run

    try:
        cfg = Run(runs[0]).config.with_overrides(list(set_ or [])).with_overrides(_typed(
            postprocess__flip_tta=flip_tta, postprocess__query_expansion=query_expansion, postprocess__rerank=rerank,
            postprocess__blend=blend, postprocess__blend_weight=blend_weight, postprocess__score_transform=transform))
        device = str(resolve_device(device or cfg.train.device))
        embedder = Embedder.from_runs(runs, device=device, flip_tta=cfg.postprocess.flip_tta, engine=_engine(engine))
        path = run_predict(runs, data_root, out, cfg.postprocess, test_images=test_images, device=device, embedder=embedder)
    except UserError as error:
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
    from .files import atomic_write_json

    try:
        metrics = score_submission(submission, test_csv, labels)
    except UserError as error:
        _fail(str(error))
    for key in LEADERBOARD_KEYS:
        value = metrics[key]
        typer.echo(f"{key:>22}  {value:.4f}" if isinstance(value, float) else f"{key:>22}  {value}")
    if json_out:
        atomic_write_json(json_out, {k: metrics[k] for k in LEADERBOARD_KEYS})


def _evaluate(run_path: Path, data_root: Optional[Path], device: Optional[str], overrides: list[str], engine: str):
    from .devices import resolve_device
    from .evaluation.evaluate import evaluate_run
    from .runs import Run

    run = Run(run_path)
    cfg = run.config.with_overrides(overrides)
    evaluation = evaluate_run(run, data_root, device=str(resolve_device(device or cfg.train.device)), postprocess=cfg.postprocess,
                              engine=_engine(engine))
    return run, cfg, evaluation


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    data_root: Annotated[Optional[Path], typer.Option(help="Data root (default: the one the run was trained on).")] = None,
    set_: SetOption = None,
    device: Device = None,
    engine: Engine = "auto",
    report: Annotated[bool, typer.Option("--report/--no-report", help="Also write RUN/report.html.")] = True,
) -> None:
    """Ablation on the run's validation split (raw, + flip TTA, + AQE, + re-rank, ...) and open-set calibration."""
    from .devices import resolve_device
    from .evaluation.evaluate import format_table

    try:
        trained, cfg, evaluation = _evaluate(run, data_root, device, list(set_ or []), engine)
        typer.echo(format_table(evaluation.rows, marked=evaluation.submission_step))
        typer.echo("(* = the configured chain: what predict writes)")
        for line in evaluation.advice(cfg.postprocess):
            typer.echo(line)
        if evaluation.background:
            typer.echo("background diagnostic (raw similarity, no flip TTA): how much the background alone can match")
            typer.echo(format_table(list(evaluation.background.items())))
        typer.echo(f"saved {run / 'evaluation.json'}")
        from .evaluation.evaluate import calibrate_run
        from .evaluation.open_set import format_open_set

        typer.echo(format_open_set(calibrate_run(trained, data_root, device=str(resolve_device(device or cfg.train.device)),
                                                 engine=_engine(engine))))
        typer.echo(f"saved {run / 'open_set.json'} (the threshold and probabilities identify uses)")
        if report:
            from .report.html import write_report

            typer.echo(f"wrote {write_report(trained, evaluation)}")
    except UserError as error:
        _fail(str(error))


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    data_root: Annotated[Optional[Path], typer.Option(help="Data root (default: the one the run was trained on).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="HTML file (default RUN/report.html).")] = None,
    set_: SetOption = None,
    device: Device = None,
    engine: Engine = "auto",
) -> None:
    """Write a self-contained HTML report: curves, per-identity AP, similarity histograms, retrieval examples, 2-D map."""
    try:
        from .report.html import write_report

        trained, _, evaluation = _evaluate(run, data_root, device, list(set_ or []), engine)
        typer.echo(f"wrote {write_report(trained, evaluation, out=out)}")
    except UserError as error:
        _fail(str(error))


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's data, run, submission and report.")] = Path("jaguar_demo"),
    scale: Annotated[float, typer.Option(help="Size of the synthetic competition (1.0 = the real one's size).")] = 0.5,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs (default: the preset's).")] = None,
    config: Annotated[str, typer.Option("--config", help="Preset or TOML file to train.")] = "lite0-cpu",
    set_: SetOption = None,
) -> None:
    """The whole job offline on a CPU: synthetic data, train lite0-cpu, predict, score, report."""
    from .demo import run_demo

    try:
        run_demo(out, scale=scale, epochs=epochs, overrides=set_ or [], config=config)
    except UserError as error:
        _fail(str(error))


@catalog_app.command("create")
def catalog_create(
    catalog: CatalogLocation,
    run: Annotated[list[Path], typer.Option("--run", help="Trained run folder; repeat it for an ensemble.")],
    store: Annotated[Optional[Path], typer.Option(help="Folder for the photos (default: CATALOG's name + _images beside it).")] = None,
    device: Device = None,
    engine: Engine = "auto",
) -> None:
    """Create a catalogue bound to a trained run (its "new individual" threshold comes with it)."""
    from .catalog import Catalog

    try:
        created = Catalog.create(catalog, run, store=store, device=device or "auto", engine=_engine(engine))
    except UserError as error:
        _fail(str(error))
    calibration = created.calibration
    typer.echo(f"created {created.name} (photos in {created.store.root}); model {created.stats()['models'][0]['fingerprint']}, "
               f"'new individual' below score {calibration.threshold:.4f}")


@catalog_app.command("bind")
def catalog_bind(
    catalog: CatalogLocation,
    run: Annotated[list[Path], typer.Option("--run", help="Trained run folder; repeat it for an ensemble.")],
    device: Device = None,
    engine: Engine = "auto",
) -> None:
    """Embed every photo with another (or a retrained) run and make it the catalogue's model."""
    try:
        fingerprint = _open_catalog(catalog, device, engine).bind(run)
    except UserError as error:
        _fail(str(error))
    typer.echo(f"{catalog}: model {fingerprint} is now active")


@catalog_app.command("add")
def catalog_add(
    catalog: CatalogLocation,
    images: Annotated[Path, typer.Option("--images", help="Folder of photos (searched recursively) or one photo.")],
    labels: Annotated[Optional[Path], typer.Option(help="filename,ground_truth CSV: these photos are known individuals; the rest are queued.")] = None,
    metadata: Annotated[Optional[Path], typer.Option(help="CSV: filename plus side/date/location and any other columns.")] = None,
    who: Who = None,
    device: Device = None,
    engine: Engine = "auto",
) -> None:
    """Add photos in one transaction: labelled ones to their individuals, the others to the review queue."""
    try:
        report = _open_catalog(catalog, device, engine).add(images, labels=labels, metadata=metadata, who=who)
    except UserError as error:
        _fail(str(error))
    typer.echo(f"added {report.added} photo(s): {report.labelled} of known individuals, {report.queued} queued for review; "
               f"{len(report.new_individuals)} new individual(s)")
    for photo, first in report.duplicates[:10]:
        typer.echo(f"  duplicate skipped: {photo} (same content as {first})")
    if len(report.duplicates) > 10:
        typer.echo(f"  ... and {len(report.duplicates) - 10} more duplicates skipped")


@app.command()
def identify(
    catalog: CatalogLocation,
    photos: Annotated[list[Path], typer.Argument(metavar="PHOTO_OR_DIR...", help="Photos, or folders of photos.")],
    top_k: Annotated[int, typer.Option(help="Candidate individuals to list per photo.")] = 5,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the results as JSON here.")] = None,
    device: Device = None,
    engine: Engine = "auto",
) -> None:
    """Which known individual is each photo, or is it a new one? Top-k individuals with score and probability."""
    from .catalog.report import format_identification
    from .files import atomic_write_json

    try:
        opened = _open_catalog(catalog, device, engine)
        results = [r for photo in photos for r in opened.identify(photo, top_k=top_k)]
    except UserError as error:
        _fail(str(error))
    for result in results:
        typer.echo(format_identification(result))
    if json_out:
        atomic_write_json(json_out, [r.to_json() for r in results])
        typer.echo(f"wrote {json_out}")


@catalog_app.command("decide")
def catalog_decide(
    catalog: CatalogLocation,
    photo: Annotated[str, typer.Argument(help="The photo: its file, its sha256 (8+ digits) or #id.")],
    as_name: Annotated[Optional[str], typer.Option("--as", help="It shows this known individual.")] = None,
    new: Annotated[Optional[str], typer.Option("--new", help="It shows a new individual; give its name.")] = None,
    reject: Annotated[bool, typer.Option("--reject", help="No usable animal in it.")] = False,
    who: Who = None,
) -> None:
    """Record a decision on a catalogue photo (logged with the candidates the engine proposed)."""
    from .catalog import Catalog

    try:
        record = Catalog(catalog).decide(photo, as_name=as_name, new_name=new, reject=reject, who=who)
    except UserError as error:
        _fail(str(error))
    what = {"known": f"is {as_name}", "new": f"is the new individual {new}", "reject": "rejected"}[record["decision"]]
    typer.echo(f"decision {record['id']}: {photo} {what}")


@catalog_app.command("export")
def catalog_export(
    catalog: CatalogLocation,
    out: Annotated[Path, typer.Option("--out", help="Folder for train.csv, train/ and metadata.csv.")],
) -> None:
    """Write the identified photos as a Kaggle-format training set (to retrain on the grown catalogue)."""
    from .catalog import Catalog

    try:
        path = Catalog(catalog).export(out)
    except UserError as error:
        _fail(str(error))
    typer.echo(f"wrote {path} (train with: jaguar-reid train --data-root {out} --out RUN)")


@catalog_app.command("stats")
def catalog_stats(
    catalog: CatalogLocation,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Individuals, photos (known, queued, rejected), photos per individual, models and decisions."""
    import json

    from .catalog import Catalog
    from .catalog.report import format_stats

    try:
        stats = Catalog(catalog).stats()
    except UserError as error:
        _fail(str(error))
    typer.echo(json.dumps(stats, indent=1) if json_out else format_stats(stats))


@catalog_app.command("upgrade")
def catalog_upgrade(catalog: CatalogLocation) -> None:
    """Upgrade a catalogue made by an older jaguar-reid to this version's schema (one transaction)."""
    from .catalog import Catalog

    try:
        old, new = Catalog.upgrade(catalog)
    except UserError as error:
        _fail(str(error))
    typer.echo(f"{catalog}: schema version {old} -> {new}" if old != new else f"{catalog}: already at schema version {new}")


@app.command()
def serve(
    catalog: CatalogLocation,
    host: Annotated[str, typer.Option(help="Address to listen on (beyond 127.0.0.1 a token is required).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    token: Annotated[Optional[str], typer.Option(envvar="JAGUAR_REID_TOKEN", help="Access token every request must carry (env JAGUAR_REID_TOKEN).")] = None,
    max_upload_mb: Annotated[int, typer.Option(help="Largest upload (all photos of one upload together), in MB.")] = 200,
    who: Who = None,
    device: Device = None,
    engine: Engine = "auto",
) -> None:
    """Start the review web app: upload photos, confirm matches side by side, grow the catalogue."""
    from .app import serve as run_server

    shown = f"http://{host}:{port}/" + (f"?token={token}" if token else "")
    typer.echo(f"serving {catalog} at {shown} (Ctrl-C stops it)")
    try:
        run_server(catalog, host=host, port=port, token=token, max_upload_mb=max_upload_mb, who=who, device=device or "auto",
                   engine=_engine(engine))
    except UserError as error:
        _fail(str(error))


@app.command("export")
def export_model(
    run: Annotated[list[Path], typer.Argument(help="Run folder(s); several (or a multi-seed run) are ensembled.")],
    out: Annotated[Path, typer.Option("--out", help="Model file to write.")],
    format_: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    flip_tta: Annotated[Optional[bool], typer.Option("--flip-tta/--no-flip-tta", help="Include flip TTA in the graph (default: the run's).")] = None,
) -> None:
    """Export a trained run as one model file: images (N, 3, H, W) in [0, 1] to L2-normalised embeddings."""
    if format_ != "onnx":
        _fail(f"--format must be onnx, got {format_!r}")
    from .inference.onnx import export_onnx

    try:
        path = export_onnx(run, out, flip_tta=flip_tta)
    except UserError as error:
        _fail(str(error))
    typer.echo(f"wrote {path}")


@config_app.command("show")
def config_show(
    preset: Annotated[str, typer.Argument(help=f"Preset ({', '.join(preset_names())}) or TOML file.")] = "lite0-cpu",
    set_: SetOption = None,
) -> None:
    """Print the resolved config as TOML, with a comment on each key."""
    from .config import describe_config, load_config

    try:
        typer.echo(describe_config(load_config(preset, list(set_ or []))))
    except UserError as error:
        _fail(str(error))


@config_app.command("presets")
def config_presets() -> None:
    """List the shipped presets."""
    from .config import load_config

    for name in preset_names():
        typer.echo(f"{name:18} {load_config(name).model.backbone}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted: rerun the same command to resume", err=True)
        sys.exit(130)
