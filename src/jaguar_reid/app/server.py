"""``jaguar-reid serve``: review matches side by side and grow the catalogue in a browser.

Server-rendered pages (FastAPI + Jinja2; the pages and actions are in ``routes``) over the same
``Catalog`` calls as the command line; one plain script adds zoom/pan, cropping and keyboard
shortcuts. Every action is one database transaction.
"""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ..catalog import Catalog
from ..catalog.store import MAX_PIXELS
from ..config import DEFAULT_BACKEND
from ..errors import CatalogError, UserError
from .routes import ReviewState, page, router
from .security import LOOPBACK, Guard

HERE = Path(__file__).parent
log = logging.getLogger("jaguar_reid.app")


class UploadTooLarge(Exception):
    """A request body above the upload limit."""
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
               max_pixels: int = MAX_PIXELS, who: str | None = None, device: str = "auto",
               backend: str = DEFAULT_BACKEND, top_k: int = 5) -> FastAPI:
    """The review app for the catalogue at ``location`` (see the module docstring)."""
    app = FastAPI(title="jaguar-reid review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.review = ReviewState(Catalog(location, device=device, backend=backend), Jinja2Templates(directory=HERE / "templates"),
                                   who, max_upload_mb, max_pixels, top_k, threading.Lock())
    app.add_middleware(Guard, token=token)
    app.add_middleware(BodyLimit, max_bytes=max_upload_mb * 2**20)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(router)

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

    return app


def check_address(host: str, port: int, token: str | None) -> None:
    """One-line errors, before anything is served: a port out of range, an address beyond this
    machine without a token, or a port another program already listens on."""
    if not 1 <= port <= 65535:
        raise CatalogError(f"--port {port} is out of range: choose a port from 1 to 65535 (e.g. 8000)")
    if host not in LOOPBACK and not token:
        raise CatalogError(f"listening on {host} needs --token (or JAGUAR_REID_TOKEN): the app holds your team's data")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a port in TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as error:
            raise CatalogError(f"cannot listen on {host}:{port} ({error.strerror}): another program uses it, "
                               "or the address is not this machine's; choose another --port or --host") from None


def serve(location: str | Path, host: str = "127.0.0.1", port: int = 8000, token: str | None = None, **options) -> None:
    """Run the app with uvicorn (after ``check_address``); beyond this machine a token is required."""
    import uvicorn

    check_address(host, port, token)
    app = create_app(location, token=token, **options)
    uvicorn.run(app, host=host, port=port, log_level="warning")
