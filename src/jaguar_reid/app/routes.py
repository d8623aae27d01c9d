"""The review app's pages and actions; each action is one ``Catalog`` call (one transaction)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.templating import Jinja2Templates

from ..catalog import Catalog
from ..catalog.review import default_who
from ..catalog.store import check_photo
from ..errors import CatalogError, ImageLoadError, UserError
from .security import check_csrf, csrf_token


@dataclass
class ReviewState:
    """What every request shares: the catalogue (with its in-memory gallery, guarded by ``lock``
    across the server's threads), the templates and the app's limits."""

    catalog: Catalog
    templates: Jinja2Templates
    who: str | None
    max_upload_mb: int
    max_pixels: int
    top_k: int
    lock: threading.Lock


def review_state(request: Request) -> ReviewState:
    """The app's ``ReviewState`` (catalogue, templates, settings, lock)."""
    return request.app.state.review


State = Annotated[ReviewState, Depends(review_state)]
router = APIRouter()


def page(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    """A template rendered with what every page shows (catalogue, reviewer, CSRF token, message)."""
    state = review_state(request)
    context.update(csrf=csrf_token(request), reviewer=reviewer(request), catalogue=state.catalog.name,
                   message=request.query_params.get("message"))
    return state.templates.TemplateResponse(request, name, context, status_code=status_code)


def reviewer(request: Request) -> str:
    """Who is reviewing: the name set on the page (a cookie), else the server's ``--who``, else the user name."""
    return (request.cookies.get("jr_who") or review_state(request).who or default_who())[:100]


async def form(request: Request):
    """The POSTed form, after its CSRF token is checked."""
    data = await request.form()
    check_csrf(request, data.get("csrf"))
    return data


def back(path: str, message: str | None = None) -> RedirectResponse:
    """A redirect (303) to a local ``path``, with an optional message shown there."""
    return RedirectResponse(path + ("?" + urlencode({"message": message}) if message else ""), status_code=303)


def _local(path) -> str | None:
    """A redirect target from a form, only if it stays on this site."""
    return str(path) if str(path or "").startswith("/") and not str(path).startswith("//") else None


@router.get("/")
def home():
    """The start page is the review queue."""
    return RedirectResponse("/review", status_code=303)


@router.post("/who")
async def set_reviewer(request: Request):
    data = await form(request)
    response = back(_local(data.get("next")) or "/review")
    response.set_cookie("jr_who", str(data.get("who", "")).strip()[:100], httponly=True, samesite="strict")
    return response


@router.get("/photos/{sha256}")
def photo(sha256: str, state: State):
    """A catalogue photo's file by its sha256 (cached by the browser for a day)."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        return PlainTextResponse("404: no such photo", status_code=404)
    with state.lock:
        image = state.catalog.find_image(sha256)
    return FileResponse(state.catalog.store.path(image["stored_path"]), headers={"Cache-Control": "private, max-age=86400"})


# ---- upload -----------------------------------------------------------------------------------------------------------

@router.get("/upload", response_class=HTMLResponse)
def upload_page(request: Request, state: State):
    """The upload form."""
    return page(request, "upload.html", max_upload_mb=state.max_upload_mb)


@router.post("/upload")
async def upload(request: Request, state: State):
    data = await form(request)
    files = [f for f in data.getlist("photos") if getattr(f, "filename", None)]
    if not files:
        raise CatalogError("no photos chosen")
    folder = Path(tempfile.mkdtemp(prefix="jaguar-reid-upload-"))
    paths = [folder / f"upload_{index}" for index in range(len(files))]  # the uploaded name is data, never a path
    names = [_safe_name(f.filename) for f in files]
    rejected, good = [], []
    try:
        for path, name, upload_file in zip(paths, names, files):
            with open(path, "wb") as out:
                shutil.copyfileobj(upload_file.file, out)
            try:
                check_photo(path, state.max_pixels)  # decoded here, whatever its name says
                good.append((path, name))
            except ImageLoadError as error:  # the good photos still go in; this one is listed
                rejected.append(f"{name} ({error.reason})")
        if not good:
            raise CatalogError(f"no photo could be read: {', '.join(rejected)}")
        with state.lock:
            report = state.catalog.add([p for p, _ in good], names=[n for _, n in good], who=reviewer(request))
    except UserError as error:  # name the uploaded file, not the temporary one
        raise CatalogError(_uploaded_names(str(error), paths, names)) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rejected += [f"{s['file']} ({s['reason']})" for s in report.skipped]
    listed = f"; not added: {', '.join(rejected)}" if rejected else ""
    return back("/review", f"{report.added} photo(s) queued for review{listed}")


# ---- review -----------------------------------------------------------------------------------------------------------

@router.get("/review", response_class=HTMLResponse)
def review(request: Request, state: State, after: int = 0):
    """The oldest queued photo after ``after``, beside its top candidates, with the verdict."""
    with state.lock:
        queued = state.catalog.queue(after=after, limit=1)
        remaining = state.catalog.stats()["photos_queued"]
        if not queued:
            return page(request, "review.html", image=None, remaining=remaining, after=after,
                        last=state.catalog.last_decision())  # the last photo decided can still be taken back
        image = queued[0]
        encounter = state.catalog.encounter_queue(image)  # a queued encounter is one card: all its photos, one decision
        result = state.catalog.identify_queued(encounter, top_k=state.top_k)
        last = state.catalog.last_decision()
    shown = json.dumps([{"individual": c.individual, "score": c.score, "decision_score": c.decision_score,
                         "probability": c.probability, "photos": [p["sha256"] for p in c.photos]} for c in result.candidates])
    names = [i["name"] for i in state.catalog.individuals()]
    return page(request, "review.html", image=image, result=result, remaining=remaining, after=after, last=last, shown=shown,
                names=names, encounter=encounter if len(encounter) > 1 else [])


@router.post("/review/{image_id}")
async def decide(request: Request, image_id: int, state: State):
    data = await form(request)
    action, after = data.get("action"), int(data.get("after") or 0)
    if action == "skip":  # past every photo of the card (an encounter's photos are one card)
        with state.lock:
            shown = state.catalog.encounter_queue(state.catalog.image(image_id)) if data.get("encounter") == "1" else []
        return back(f"/review?after={max([image_id] + [p['id'] for p in shown])}")
    choice = {"confirm": {"as_name": data.get("individual")}, "new": {"new_name": data.get("name") or ""},
              "reject": {"reject": True}}.get(action)
    if choice is None:
        raise CatalogError(f"unknown action {action!r}")
    with state.lock:
        state.catalog.decide(f"#{image_id}", who=reviewer(request), expect_status="queued",
                             candidates=_shown(data.get("shown")), with_encounter=data.get("encounter") == "1", **choice)
    return back(f"/review?after={after}" if after else "/review")


@router.post("/review/{image_id}/crop")
async def crop(request: Request, image_id: int, state: State):
    data = await form(request)
    after = int(data.get("after") or 0)
    box = None
    if not data.get("clear"):
        try:
            box = tuple(float(data.get(side, "")) for side in ("left", "top", "right", "bottom"))
        except ValueError:
            raise CatalogError("the crop box needs four numbers: left, top, right, bottom") from None
    with state.lock:
        state.catalog.crop(f"#{image_id}", box)
    message = "crop cleared: matching on the whole photo" if box is None else "cropped: matching on the crop"
    return back(f"/review?after={after}" if after else "/review", message)


# ---- individuals ------------------------------------------------------------------------------------------------------

@router.get("/individuals", response_class=HTMLResponse)
def individuals_page(request: Request, state: State):
    """Every individual with a cover photo and its photo count."""
    with state.lock:
        return page(request, "individuals.html", individuals=state.catalog.individuals())


@router.get("/individuals/{name}", response_class=HTMLResponse)
def individual_page(request: Request, name: str, state: State):
    """One individual's photos, with rename and merge forms."""
    with state.lock:
        return page(request, "individual.html", individual=state.catalog.individual(name),
                    others=[i["name"] for i in state.catalog.individuals() if i["name"] != name])


@router.post("/individuals/{name}/rename")
async def rename(request: Request, name: str, state: State):
    data = await form(request)
    new_name = str(data.get("new_name", "")).strip()
    with state.lock:
        state.catalog.rename(name, new_name)
    return back(f"/individuals/{quote(new_name, safe='')}", f"renamed {name} to {new_name}")


@router.post("/merge")
async def merge(request: Request, state: State):
    data = await form(request)
    source, target = str(data.get("source", "")), str(data.get("target", ""))
    if data.get("confirm") != "yes":
        raise CatalogError(f"merging {source} into {target} needs the confirmation box ticked")
    with state.lock:
        moved = state.catalog.merge(source, target, who=reviewer(request))
    return back(f"/individuals/{quote(target, safe='')}", f"merged {source} into {target}: {moved} photo(s) moved (undo in History)")


# ---- history and export -----------------------------------------------------------------------------------------------

@router.get("/history", response_class=HTMLResponse)
def history(request: Request, state: State):
    """The decision log, newest first, each with an undo button."""
    with state.lock:
        return page(request, "history.html", decisions=state.catalog.decision_log(limit=500))


@router.post("/undo/{decision_id}")
async def undo(request: Request, decision_id: int, state: State):
    data = await form(request)
    with state.lock:
        restored = state.catalog.undo(decision_id, who=reviewer(request))
    return back(_local(data.get("next")) or "/history", f"undid decision {decision_id} ({restored} photo(s) restored)")


@router.get("/export", response_class=HTMLResponse)
def export_page(request: Request, state: State):
    """What an export holds, with the download links."""
    with state.lock:
        return page(request, "export.html", stats=state.catalog.stats())


@router.get("/export/catalogue.zip")
def export_zip(state: State):
    """The identified photos as a Kaggle-format training set, zipped."""
    with tempfile.TemporaryDirectory(prefix="jaguar-reid-export-") as folder, state.lock:
        root = Path(folder) / "catalogue"
        state.catalog.export(root)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # photos are compressed already
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(root).as_posix())
    return Response(buffer.getvalue(), media_type="application/zip",
                    headers={"Content-Disposition": 'attachment; filename="catalogue.zip"'})


@router.get("/export/decisions.csv")
def export_decisions(state: State):
    """The decision log as CSV."""
    with state.lock:
        rows = state.catalog.decision_log()
    text = io.StringIO()
    writer = csv.DictWriter(text, ["id", "at", "who", "decision", "individual", "original_name", "sha256", "candidates"],
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return Response(text.getvalue(), media_type="text/csv", headers={"Content-Disposition": 'attachment; filename="decisions.csv"'})


def _safe_name(filename: str | None) -> str:
    """The uploaded file's own name without any folder part (``../x.jpg`` -> ``x.jpg``), for display only."""
    name = (filename or "photo").replace("\\", "/").split("/")[-1].strip()
    return "".join(c for c in name if c.isprintable())[:200] or "photo"


def _uploaded_names(message: str, paths: list[Path], names: list[str]) -> str:
    for path, name in zip(paths, names):
        message = message.replace(str(path), name)
    return message


def _shown(text: str | None) -> list[dict] | None:
    """The candidates the review page showed (its ``shown`` field), to be logged as shown."""
    if not text:
        return None
    try:
        shown = json.loads(text)
    except json.JSONDecodeError:
        raise CatalogError("the review form's list of shown candidates is not valid JSON; reload the page") from None
    if not isinstance(shown, list) or not all(isinstance(c, dict) for c in shown):
        raise CatalogError("the review form's list of shown candidates is malformed; reload the page")
    return shown
