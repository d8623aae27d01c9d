"""``jaguar-reid serve``: review matches side by side and grow the catalogue in a browser.

Server-rendered pages (FastAPI + Jinja2) over the same ``Catalog`` calls as the command line;
one plain script adds zoom/pan and keyboard shortcuts. Every action is one database transaction.
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ..catalog import Catalog
from ..catalog.catalog import default_who
from ..catalog.store import MAX_PIXELS, check_photo
from ..errors import CatalogError, UserError
from .security import LOOPBACK, Guard, check_csrf, csrf_token

HERE = Path(__file__).parent
log = logging.getLogger("jaguar_reid.app")


class UploadTooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies above ``max_bytes`` (by Content-Length, and while they stream)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = PlainTextResponse(f"413: upload larger than the limit of {self.max_bytes // 2**20} MB", status_code=413)
            return await response(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise UploadTooLarge()
            return message

        return await self.app(scope, limited, send)


def create_app(location: str | Path, token: str | None = None, max_upload_mb: int = 200,
               max_pixels: int = MAX_PIXELS, who: str | None = None, device: str = "auto", engine: str = "auto",
               top_k: int = 5) -> FastAPI:
    """The review app for the catalogue at ``location`` (see the module docstring)."""
    catalog = Catalog(location, device=device, engine=engine)
    lock = threading.Lock()  # one Catalog (its in-memory gallery) shared by the server's threads
    templates = Jinja2Templates(directory=HERE / "templates")
    app = FastAPI(title="jaguar-reid review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(Guard, token=token)
    app.add_middleware(BodyLimit, max_bytes=max_upload_mb * 2**20)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def page(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
        context.update(csrf=csrf_token(request), reviewer=reviewer(request), catalogue=catalog.name,
                       message=request.query_params.get("message"))
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    def reviewer(request: Request) -> str:
        return (request.cookies.get("jr_who") or who or default_who())[:100]

    async def form(request: Request) -> dict:
        data = await request.form()
        check_csrf(request, data.get("csrf"))
        return data

    def back(path: str, message: str | None = None) -> RedirectResponse:
        from urllib.parse import urlencode

        return RedirectResponse(path + ("?" + urlencode({"message": message}) if message else ""), status_code=303)

    @app.exception_handler(UserError)
    async def user_error(request: Request, error: UserError):
        return page(request, "message.html", status_code=400, error=str(error))

    @app.exception_handler(PermissionError)
    async def forbidden(request: Request, error: PermissionError):
        return PlainTextResponse(f"403: {error}", status_code=403)

    @app.exception_handler(UploadTooLarge)
    async def too_large(request: Request, error: UploadTooLarge):
        return PlainTextResponse(f"413: upload larger than the limit of {max_upload_mb} MB", status_code=413)

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception):
        log.exception("error on %s", request.url.path)  # the traceback goes to the server's log only
        return PlainTextResponse("500: something went wrong on the server (details are in its log)", status_code=500)

    @app.get("/")
    def home():
        return RedirectResponse("/review", status_code=303)

    @app.post("/who")
    async def set_reviewer(request: Request):
        data = await form(request)
        response = back(data.get("next") if str(data.get("next", "")).startswith("/") else "/review")
        response.set_cookie("jr_who", str(data.get("who", "")).strip()[:100], httponly=True, samesite="strict")
        return response

    # ---- photos ---------------------------------------------------------------------------------------

    @app.get("/photos/{sha256}")
    def photo(sha256: str):
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            return PlainTextResponse("404: no such photo", status_code=404)
        with lock:
            image = catalog.find_image(sha256)
        return FileResponse(catalog.store.path(image["stored_path"]), headers={"Cache-Control": "private, max-age=86400"})

    # ---- upload -------------------------------------------------------------------------------------------

    @app.get("/upload", response_class=HTMLResponse)
    def upload_page(request: Request):
        return page(request, "upload.html", max_upload_mb=max_upload_mb)

    @app.post("/upload")
    async def upload(request: Request):
        data = await form(request)
        files = [f for f in data.getlist("photos") if getattr(f, "filename", None)]
        if not files:
            raise CatalogError("no photos chosen")
        folder = Path(tempfile.mkdtemp(prefix="jaguar-reid-upload-"))
        paths = [folder / f"upload_{index}" for index in range(len(files))]  # the uploaded name is data, never a path
        names = [_safe_name(f.filename) for f in files]
        try:
            for path, upload_file in zip(paths, files):
                with open(path, "wb") as out:
                    shutil.copyfileobj(upload_file.file, out)
                check_photo(path, max_pixels)  # decoded here, whatever its name says: a non-image stops the upload
            with lock:
                report = catalog.add(paths, names=names, who=reviewer(request))
        except UserError as error:  # name the uploaded file, not the temporary one
            raise CatalogError(_uploaded_names(str(error), paths, names)) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        skipped = f"; {len(report.duplicates)} already in the catalogue" if report.duplicates else ""
        return back("/review", f"{report.added} photo(s) queued for review{skipped}")

    # ---- review --------------------------------------------------------------------------------------------

    @app.get("/review", response_class=HTMLResponse)
    def review(request: Request, after: int = 0):
        with lock:
            queued = catalog.queue(after=after, limit=1)
            remaining = catalog.stats()["photos_queued"]
            if not queued:
                return page(request, "review.html", image=None, remaining=remaining, after=after)
            image = queued[0]
            result = catalog.identify([catalog.store.path(image["stored_path"])], top_k=top_k)[0]
        return page(request, "review.html", image=image, result=result, remaining=remaining, after=after,
                    last=_last_decision(catalog))

    @app.post("/review/{image_id}")
    async def decide(request: Request, image_id: int):
        data = await form(request)
        action, after = data.get("action"), int(data.get("after") or 0)
        if action == "skip":
            return back(f"/review?after={image_id}")
        choice = {"confirm": {"as_name": data.get("individual")}, "new": {"new_name": data.get("name") or ""},
                  "reject": {"reject": True}}.get(action)
        if choice is None:
            raise CatalogError(f"unknown action {action!r}")
        with lock:
            catalog.decide(f"#{image_id}", who=reviewer(request), expect_status="queued", **choice)
        return back(f"/review?after={after}" if after else "/review")

    @app.post("/review/{image_id}/crop")
    async def crop(request: Request, image_id: int):
        data = await form(request)
        after = int(data.get("after") or 0)
        if data.get("clear"):
            box = None
        else:
            try:
                box = tuple(float(data.get(side, "")) for side in ("left", "top", "right", "bottom"))
            except ValueError:
                raise CatalogError("the crop box needs four numbers: left, top, right, bottom") from None
        with lock:
            catalog.crop(f"#{image_id}", box)
        message = "crop cleared: matching on the whole photo" if box is None else "cropped: matching on the crop"
        return back(f"/review?after={after}" if after else "/review", message)

    # ---- individuals -----------------------------------------------------------------------------------------

    @app.get("/individuals", response_class=HTMLResponse)
    def individuals_page(request: Request):
        with lock:
            return page(request, "individuals.html", individuals=catalog.individuals())

    @app.get("/individuals/{name}", response_class=HTMLResponse)
    def individual_page(request: Request, name: str):
        with lock:
            return page(request, "individual.html", individual=catalog.individual(name),
                        others=[i["name"] for i in catalog.individuals() if i["name"] != name])

    @app.post("/individuals/{name}/rename")
    async def rename(request: Request, name: str):
        data = await form(request)
        with lock:
            catalog.rename(name, str(data.get("new_name", "")))
        return back(f"/individuals/{_quote(str(data.get('new_name', '')).strip())}", f"renamed {name} to {data.get('new_name')}")

    @app.post("/merge")
    async def merge(request: Request):
        data = await form(request)
        source, target = str(data.get("source", "")), str(data.get("target", ""))
        if data.get("confirm") != "yes":
            raise CatalogError(f"merging {source} into {target} needs the confirmation box ticked")
        with lock:
            moved = catalog.merge(source, target, who=reviewer(request))
        return back(f"/individuals/{_quote(target)}", f"merged {source} into {target}: {moved} photo(s) moved (undo in History)")

    # ---- history -----------------------------------------------------------------------------------------------

    @app.get("/history", response_class=HTMLResponse)
    def history(request: Request):
        with lock:
            return page(request, "history.html", decisions=catalog.decision_log(limit=500))

    @app.post("/undo/{decision_id}")
    async def undo(request: Request, decision_id: int):
        data = await form(request)
        with lock:
            restored = catalog.undo(decision_id, who=reviewer(request))
        target = data.get("next") if str(data.get("next", "")).startswith("/") else "/history"
        return back(target, f"undid decision {decision_id} ({restored} photo(s) restored)")

    # ---- export -----------------------------------------------------------------------------------------------

    @app.get("/export", response_class=HTMLResponse)
    def export_page(request: Request):
        with lock:
            return page(request, "export.html", stats=catalog.stats())

    @app.get("/export/catalogue.zip")
    def export_zip():
        with tempfile.TemporaryDirectory(prefix="jaguar-reid-export-") as folder, lock:
            catalog.export(Path(folder) / "catalogue")
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # photos are compressed already
                for path in sorted((Path(folder) / "catalogue").rglob("*")):
                    if path.is_file():
                        archive.write(path, path.relative_to(Path(folder) / "catalogue").as_posix())
        return Response(buffer.getvalue(), media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="catalogue.zip"'})

    @app.get("/export/decisions.csv")
    def export_decisions():
        with lock:
            rows = catalog.decision_log()
        text = io.StringIO()
        columns = ["id", "at", "who", "decision", "individual", "original_name", "sha256", "candidates"]
        writer = csv.DictWriter(text, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return Response(text.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="decisions.csv"'})

    return app


def _safe_name(filename: str | None) -> str:
    """The uploaded file's own name without any folder part (``../x.jpg`` -> ``x.jpg``), for display only."""
    name = (filename or "photo").replace("\\", "/").split("/")[-1].strip()
    return "".join(c for c in name if c.isprintable())[:200] or "photo"


def _uploaded_names(message: str, paths: list[Path], names: list[str]) -> str:
    for path, name in zip(paths, names):
        message = message.replace(str(path), name)
    return message


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _last_decision(catalog: Catalog) -> dict | None:
    """The newest decision not undone yet (what the review page's undo button takes back)."""
    import json

    recent = catalog.decision_log(limit=50)
    undone = {json.loads(d["candidates"])["undoes"] for d in recent if d["decision"] == "undo"}
    rows = [d for d in recent if d["decision"] != "undo" and d["id"] not in undone]
    return rows[0] if rows else None


def serve(location: str | Path, host: str = "127.0.0.1", port: int = 8000, token: str | None = None, **options) -> None:
    """Run the app with uvicorn; beyond this machine (``host`` not loopback) a token is required."""
    import uvicorn

    if host not in LOOPBACK and not token:
        raise CatalogError(f"listening on {host} needs --token (or JAGUAR_REID_TOKEN): the app holds your team's data")
    app = create_app(location, token=token, **options)
    uvicorn.run(app, host=host, port=port, log_level="warning")
