"""A static page mounted by a service (the staff console, the resident and volunteer pages):
its index at ``<prefix>/``, ``<prefix>`` redirected there, and a fixed list of assets at
``<prefix>/static/<name>`` — each with the page's security headers, nothing else served."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from tongxin.runtime.errors import ApiError

HTML = "text/html; charset=utf-8"


def serve_static_page(
    router: APIRouter,
    prefix: str,
    static: Path,
    assets: Mapping[str, str],
    headers: Mapping[str, str],
) -> None:
    """Add the page's three routes to ``router`` (whose own prefix is ``prefix``).

    ``assets`` maps a file name under ``static`` to its media type: a name not in it is 404,
    so nothing but the page's own files can be read through the route."""
    extra = dict(headers)

    async def root() -> RedirectResponse:
        return RedirectResponse(f"{prefix}/", status_code=308)

    async def page() -> FileResponse:
        return FileResponse(static / "index.html", media_type=HTML, headers=extra)

    async def asset(name: str) -> FileResponse:
        media = assets.get(name)
        if media is None:
            raise ApiError(404, "not_found", "No such file.")
        return FileResponse(static / name, media_type=media, headers=extra)

    router.add_api_route("", root, methods=["GET"], include_in_schema=False)
    router.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    router.add_api_route("/static/{name}", asset, methods=["GET"], include_in_schema=False)
