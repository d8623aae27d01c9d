"""The review app's guards: an access token, cross-site request protection, upload limits.

- Token: when the app listens beyond this machine it needs one. A browser presents it once as
  ``?token=...`` (it is then kept in an HttpOnly cookie); scripts send ``Authorization: Bearer``.
  Checked on every request, in constant time.
- Cross-site requests: every POST carries the form field ``csrf`` equal to the ``jr_csrf``
  cookie (SameSite=Strict, so another site can neither read nor send it), and a POST whose
  ``Origin`` is another site, or whose ``Sec-Fetch-Site`` says cross-site, is refused.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

TOKEN_COOKIE, CSRF_COOKIE = "jr_token", "jr_csrf"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def csrf_token(request: Request) -> str:
    """This browser's CSRF token (set by ``Guard`` on the first request)."""
    return request.state.csrf


class Guard(BaseHTTPMiddleware):
    """ASGI middleware: the access token (when set) and the CSRF check on every form post."""
    def __init__(self, app, token: str | None):
        super().__init__(app)
        self.token = token

    def _has_token(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        offered = request.cookies.get(TOKEN_COOKIE) or (header[7:] if header.lower().startswith("bearer ") else "")
        return bool(offered) and hmac.compare_digest(offered.encode(), self.token.encode())

    async def dispatch(self, request: Request, call_next) -> Response:
        if self.token is not None:
            offered = request.query_params.get("token")
            if offered is not None and hmac.compare_digest(offered.encode(), self.token.encode()):
                response = RedirectResponse(request.url.remove_query_params("token"), status_code=303)
                response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
                return response
            if not self._has_token(request):
                return PlainTextResponse("401: this catalogue needs its access token (open the link with ?token=...)",
                                         status_code=401)
        if request.method == "POST" and not _same_site(request):
            return PlainTextResponse("403: cross-site request refused", status_code=403)
        request.state.csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        response = await call_next(request)
        if request.cookies.get(CSRF_COOKIE) != request.state.csrf:
            response.set_cookie(CSRF_COOKIE, request.state.csrf, httponly=True, samesite="strict")
        return response


def _same_site(request: Request) -> bool:
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return urlsplit(origin).netloc == request.headers.get("host")
    return origin != "null"


def check_csrf(request: Request, submitted: str | None) -> None:
    """Raise ``PermissionError`` unless the form's ``csrf`` field matches this browser's cookie."""
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(cookie.encode(), submitted.encode()):
        raise PermissionError("cross-site request refused (the form's security token is missing or stale: reload the page)")
