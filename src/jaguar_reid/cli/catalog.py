"""Catalogue commands: catalog create/bind/add/export/stats/upgrade, identify, serve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import Backend, BackendOption, CatalogLocation, Device, ExportLayout, Strict, Who, app, catalog_app


def _open_catalog(location: str, device: Optional[str], backend: Backend):
    from ..catalog import Catalog

    return Catalog(location, device=device or "auto", backend=backend.value)


@catalog_app.command("create")
def catalog_create(
    catalog: CatalogLocation,
    run: Annotated[list[Path], typer.Option("--run", help="Trained run folder; repeat it for an ensemble.")],
    store: Annotated[Optional[Path], typer.Option(help="Folder for the photos (default: CATALOG's name + _images beside it).")] = None,
    device: Device = None,
    backend: BackendOption = Backend.auto,
) -> None:
    """Create a catalogue bound to a trained run (its "new individual" threshold comes with it)."""
    from ..tasks.catalogue import create_catalog

    created = create_catalog(catalog, run, store=store, device=device or "auto", backend=backend.value)
    calibration = created.calibration
    typer.echo(f"created {created.name} (photos in {created.store.root}); model {created.stats()['models'][0]['fingerprint']}, "
               f"'new individual' below score {calibration.threshold:.4f}")


@catalog_app.command("bind")
def catalog_bind(
    catalog: CatalogLocation,
    run: Annotated[list[Path], typer.Option("--run", help="Trained run folder; repeat it for an ensemble.")],
    device: Device = None,
    backend: BackendOption = Backend.auto,
) -> None:
    """Embed every photo with another (or a retrained) run and make it the catalogue's model."""
    from ..tasks.catalogue import bind_catalog

    fingerprint = bind_catalog(_open_catalog(catalog, device, backend), run)
    typer.echo(f"{catalog}: model {fingerprint} is now active")


@catalog_app.command("add")
def catalog_add(
    catalog: CatalogLocation,
    images: Annotated[Path, typer.Option("--images", help="Folder of photos (searched recursively) or one photo.")],
    labels: Annotated[Optional[Path], typer.Option(help="filename,ground_truth CSV: these photos are known individuals; the rest are queued.")] = None,
    metadata: Annotated[Optional[Path], typer.Option(help="CSV: filename plus side/date/location and any other columns.")] = None,
    who: Who = None,
    encounter_by: Annotated[Optional[str], typer.Option(help="Group the photos into encounters: folder, time:MINUTES "
                                                             "(EXIF times of one folder) or column:NAME (of --metadata).")] = None,
    strict: Strict = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the report (added, skipped with reasons) as JSON here.")] = None,
    device: Device = None,
    backend: BackendOption = Backend.auto,
) -> None:
    """Add photos in one transaction: labelled ones to their individuals, the others to the review queue.
    Files that are not readable photos (notes, thumbnails, broken files) and duplicates are skipped and listed."""
    from dataclasses import asdict

    from ..files import atomic_write_json

    report = _open_catalog(catalog, device, backend).add(images, labels=labels, metadata=metadata, who=who, strict=strict,
                                                         encounter_by=encounter_by)
    typer.echo(f"added {report.added} photo(s) in {report.encounters} encounter(s): {report.labelled} of known individuals, "
               f"{report.queued} queued for review; {len(report.new_individuals)} new individual(s); "
               f"{len(report.skipped)} file(s) skipped")
    for note in report.notes:
        typer.echo(f"  note: {note}")
    _say_skipped(report.skipped)
    if json_out:
        atomic_write_json(json_out, asdict(report))
        typer.echo(f"wrote {json_out}")


def _say_skipped(skipped: list[dict], shown: int = 20) -> None:
    for item in skipped[:shown]:
        typer.echo(f"  skipped {item['file']}: {item['reason']}")
    if len(skipped) > shown:
        typer.echo(f"  ... and {len(skipped) - shown} more skipped (all of them are in --json)")


@app.command()
def identify(
    catalog: CatalogLocation,
    photos: Annotated[list[Path], typer.Argument(metavar="PHOTO_OR_DIR...", help="Photos, or folders of photos.")],
    top_k: Annotated[int, typer.Option(min=1, help="Candidate individuals to list per photo (the verdict does not depend on it).")] = 5,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the results (and the skipped files) as JSON here.")] = None,
    by_encounter: Annotated[Optional[str], typer.Option(help="One answer per encounter: folder, time:MINUTES or column:NAME "
                                                             "(of --metadata); its photos' evidence is pooled.")] = None,
    metadata: Annotated[Optional[Path], typer.Option(help="CSV with the column that --by-encounter column:NAME reads.")] = None,
    strict: Strict = False,
    device: Device = None,
    backend: BackendOption = Backend.auto,
) -> None:
    """Which known individual is each photo, or is it a new one? Top-k individuals with score and probability."""
    from ..catalog.report import format_identification
    from ..files import atomic_write_json

    opened = _open_catalog(catalog, device, backend)
    answers = [opened.identify_encounters(photo, by_encounter, metadata, top_k=top_k, strict=strict) if by_encounter
               else opened.identify(photo, top_k=top_k, strict=strict) for photo in photos]
    results = [r for answer in answers for r in answer]
    skipped = [s for answer in answers for s in answer.skipped]
    for result in results:
        typer.echo(format_identification(result))
    counted = f"{len(results)} encounter(s) of {sum(len(r.photos) for r in results)} photo(s)" if by_encounter else f"{len(results)} photo(s)"
    typer.echo(f"identified {counted}; {len(skipped)} file(s) skipped")
    for note in (n for answer in answers for n in answer.notes):
        typer.echo(f"  note: {note}")
    _say_skipped(skipped)
    if json_out:
        rows = [r.to_json() for r in results] + [{"photo": s["file"], "verdict": "skipped", "reason": s["reason"]}
                                                  for s in skipped]
        atomic_write_json(json_out, rows)
        typer.echo(f"wrote {json_out}")


@catalog_app.command("export")
def catalog_export(
    catalog: CatalogLocation,
    out: Annotated[Path, typer.Option("--out", help="Folder to write into.")],
    layout: Annotated[ExportLayout, typer.Option(help="kaggle: train.csv, train/ and metadata.csv, to retrain; folders: "
                                                      "a folder per individual with individuals.csv and photos.csv, for people.")] = ExportLayout.kaggle,
) -> None:
    """Write the identified photos out: a Kaggle-format training set, or a folder per individual."""
    from ..catalog import Catalog

    path = Catalog(catalog).export(out, layout=ExportLayout(layout).value)
    hint = f" (train with: jaguar-reid train --data-root {out} --out RUN)" if layout == ExportLayout.kaggle else ""
    typer.echo(f"wrote {path}{hint}")


@catalog_app.command("stats")
def catalog_stats(
    catalog: CatalogLocation,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Individuals, photos (known, queued, rejected), photos per individual, models and decisions."""
    import json

    from ..catalog import Catalog
    from ..catalog.report import format_stats

    stats = Catalog(catalog).stats()
    typer.echo(json.dumps(stats, indent=1) if json_out else format_stats(stats))


@catalog_app.command("upgrade")
def catalog_upgrade(catalog: CatalogLocation) -> None:
    """Upgrade a catalogue made by an older jaguar-reid to this version's schema (one transaction)."""
    from ..catalog import Catalog

    old, new = Catalog.upgrade(catalog)
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
    backend: BackendOption = Backend.auto,
) -> None:
    """Start the review web app: upload photos, confirm matches side by side, grow the catalogue."""
    from ..app import serve as run_server
    from ..app.server import check_address
    from ..catalog import Catalog

    check_address(host, port, token)
    Catalog(catalog, device=device or "auto", backend=backend.value)  # a file that is no catalogue stops here, in one line
    shown = f"http://{host}:{port}/" + (f"?token={token}" if token else "")
    typer.echo(f"serving {catalog} at {shown} (Ctrl-C stops it)")
    run_server(catalog, host=host, port=port, token=token, max_upload_mb=max_upload_mb, who=who, device=device or "auto",
               backend=backend.value)
