"""The resident page (``/r/``): a zh-CN, phone-first page where a resident raises a need,
follows it with the tracking code and rates the result (docs/resident.md).

A place of its own, not part of any service, like the staff console: a service's app
(intake's, the front door) mounts :data:`router`. The page is static — one HTML file, one
script, one stylesheet — and calls intake's public API (``/v1/categories``,
``/v1/compounds``, ``/v1/requests``…) on the same origin, without a token. The one thing
served here besides the files is the QR code of a tracking link, drawn on the server as
SVG (segno), so nothing is fetched from another host and no QR library runs in the page.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from urllib.parse import urlsplit

import segno
from fastapi import APIRouter, Query, Request, Response

from tongxin.runtime.errors import ApiError
from tongxin.runtime.pages import serve_static_page

STATIC = Path(__file__).parent / "static"
PREFIX = "/r"
# the files the page serves, and their media types (nothing else under /r/static/)
ASSETS = {
    "resident.css": "text/css; charset=utf-8",
    "resident.js": "text/javascript; charset=utf-8",
}
# the page runs only its own script and talks only to its own origin; the location is
# offered to this origin only, nothing else of the device
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "permissions-policy": "geolocation=(self), camera=(), microphone=(), payment=()",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}
# the QR image carries a tracking code: drawn only, never cached or framed
QR_HEADERS = {
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
QR_MAX_CHARS = 300
# what a tracking link's fragment may be: the request id and its tracking code, nothing else
TRACK_FRAGMENT = re.compile(r"/track\?id=[A-Z]{1,8}-\d{8}-\d{6}&code=[A-Za-z0-9_-]{8,64}")

router = APIRouter(prefix=PREFIX, include_in_schema=False)


serve_static_page(router, PREFIX, STATIC, ASSETS, SECURITY_HEADERS)


def tracking_link_problem(data: str, host: str | None) -> str | None:
    """Why ``data`` is not a tracking link of this page on ``host``, or None when it is.

    Only ``http(s)://<host>/r/#/track?id=…&code=…`` is drawn: the endpoint cannot be used
    to make QR codes of other sites' addresses (a phishing aid) or of arbitrary text.
    """
    if len(data) > QR_MAX_CHARS:
        return f"at most {QR_MAX_CHARS} characters"
    try:
        link = urlsplit(data)
    except ValueError:
        return "not a link"
    if link.scheme not in ("http", "https") or not host or link.netloc != host:
        return "only a link to this page on this host"
    if link.path != f"{PREFIX}/" or link.query or not TRACK_FRAGMENT.fullmatch(link.fragment):
        return "only a tracking link of this page (/r/#/track?id=…&code=…)"
    return None


def qr_svg(data: str) -> bytes:
    """The QR code of ``data`` as a standalone SVG document."""
    out = io.BytesIO()
    segno.make(data, error="m", micro=False).save(
        out, kind="svg", scale=6, border=4, xmldecl=False, title="追踪链接二维码"
    )
    return out.getvalue()


@router.get("/qr.svg")
async def tracking_qr(
    request: Request, data: str = Query(default="", max_length=QR_MAX_CHARS * 2)
) -> Response:
    """The QR code (SVG) of one of this page's tracking links; anything else is 422."""
    problem = tracking_link_problem(data, request.headers.get("host"))
    if problem:
        raise ApiError(
            422,
            "validation_error",
            "The request is not valid.",
            [{"loc": ["query", "data"], "msg": problem, "type": "tracking_link"}],
        )
    return Response(qr_svg(data), media_type="image/svg+xml", headers=QR_HEADERS)
