"""Catalogue commands: catalog create/bind/add/decide/export/stats/upgrade, identify, serve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (
    Backend,
    BackendOption,
    CatalogLocation,
    Device,
    Who,
    app,
    catalog_app,
)


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
    device: Device = None,
    backend: BackendOption = Backend.auto,
) -> None:
    """Add photos in one transaction: labelled ones to their individuals, the others to the review queue."""
    report = _open_catalog(catalog, device, backend).add(images, labels=labels, metadata=metadata, who=who)
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
    backend: BackendOption = Backend.auto,
) -> None:
    """Which known individual is each photo, or is it a new one? Top-k individuals with score and probability."""
    from ..catalog.report import format_identification
    from ..files import atomic_write_json

    opened = _open_catalog(catalog, device, backend)
    results = [r for photo in photos for r in opened.identify(photo, top_k=top_k)]
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
    from ..catalog import Catalog

    record = Catalog(catalog).decide(photo, as_name=as_name, new_name=new, reject=reject, who=who)
    what = {"known": f"is {as_name}", "new": f"is the new individual {new}", "reject": "rejected"}[record["decision"]]
    was = f" (was {record['was']}, now {as_name or new or 'rejected'})" if record["was"] else ""
    typer.echo(f"decision {record['id']}: {photo} {what}{was}")


@catalog_app.command("export")
def catalog_export(
    catalog: CatalogLocation,
    out: Annotated[Path, typer.Option("--out", help="Folder for train.csv, train/ and metadata.csv.")],
) -> None:
    """Write the identified photos as a Kaggle-format training set (to retrain on the grown catalogue)."""
    from ..catalog import Catalog

    path = Catalog(catalog).export(out)
    typer.echo(f"wrote {path} (train with: jaguar-reid train --data-root {out} --out RUN)")


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

    shown = f"http://{host}:{port}/" + (f"?token={token}" if token else "")
    typer.echo(f"serving {catalog} at {shown} (Ctrl-C stops it)")
    run_server(catalog, host=host, port=port, token=token, max_upload_mb=max_upload_mb, who=who, device=device or "auto",
               backend=backend.value)
