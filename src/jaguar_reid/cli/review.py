"""Review commands: catalog decide, rename, merge and undo (each one transaction, one entry in the log)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from ..errors import CatalogError
from .common import CatalogLocation, Who, catalog_app


def _catalog(location: str):
    from ..catalog import Catalog

    return Catalog(location)


@catalog_app.command("decide")
def catalog_decide(
    catalog: CatalogLocation,
    photo: Annotated[str, typer.Argument(help="The photo: its file, its sha256 (8+ digits) or #id.")],
    as_name: Annotated[Optional[str], typer.Option("--as", help="It shows this known individual.")] = None,
    new: Annotated[Optional[str], typer.Option("--new", help="It shows a new individual; give its name.")] = None,
    reject: Annotated[bool, typer.Option("--reject", help="No usable animal in it.")] = False,
    who: Who = None,
) -> None:
    """Record a decision on a catalogue photo (on a photo decided before, it says what it was)."""
    record = _catalog(catalog).decide(photo, as_name=as_name, new_name=new, reject=reject, who=who)
    what = {"known": f"is {as_name}", "new": f"is the new individual {new}", "reject": "rejected"}[record["decision"]]
    was = f" (was {record['was']}, now {as_name or new or 'rejected'})" if record["was"] else ""
    typer.echo(f"decision {record['id']}: {photo} {what}{was}")


@catalog_app.command("rename")
def catalog_rename(
    catalog: CatalogLocation,
    old: Annotated[str, typer.Argument(help="The individual's name now.")],
    new: Annotated[str, typer.Argument(help="Its new name.")],
    who: Who = None,
) -> None:
    """Rename an individual (logged and undoable; every open catalogue, the review app included, sees it)."""
    record = _catalog(catalog).rename(old, new, who=who)
    _say_done(catalog, record["id"], f"{old} is now {new.strip()}")


@catalog_app.command("merge")
def catalog_merge(
    catalog: CatalogLocation,
    source: Annotated[str, typer.Argument(help="The individual whose photos move (it is then merged away).")],
    target: Annotated[str, typer.Argument(help="The individual they move to.")],
    who: Who = None,
) -> None:
    """Merge two individuals found to be one animal: every photo of SOURCE goes to TARGET (one undoable action)."""
    opened = _catalog(catalog)
    moved = opened.merge(source, target, who=who)
    # this merge's newest row (the app may have logged a decision since, so not just the newest one)
    logged = next(row for row in opened.decision_log(limit=moved + 50)
                  if row["decision"] == "merge" and json.loads(row["detail"]) == {"source": source, "target": target})
    _say_done(catalog, logged["id"], f"moved {moved} photo(s) of {source} to {target}")


def _say_done(catalog: str, decision: int, what: str) -> None:
    typer.echo(f"decision {decision}: {what} (undo with: jaguar-reid catalog undo {catalog} --decision {decision})")


@catalog_app.command("undo")
def catalog_undo(
    catalog: CatalogLocation,
    decision: Annotated[Optional[int], typer.Option("--decision", help="The decision's id (default: the newest one not undone yet).")] = None,
    who: Who = None,
) -> None:
    """Take back a decision, merge or rename (if nothing decided since depends on it)."""
    opened = _catalog(catalog)
    if decision is None:
        last = opened.last_decision()
        if last is None:
            raise CatalogError(f"{catalog}: no decision to undo")
        decision = last["id"]
    undone = opened.decision(decision)
    opened.undo(decision, who=who)
    typer.echo(f"undid decision {decision}" + (f" ({undone['summary']}{', ' + undone['original_name'] if undone['original_name'] else ''})"
                                               if undone else ""))
