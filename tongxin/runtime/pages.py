"""A static page mounted by a service (the staff console, the resident and volunteer pages):
its index at ``<prefix>/``, ``<prefix>`` redirected there, and a fixed list of assets at
``<prefix>/static/<name>`` — each with the page's security headers, nothing else served.

Every page also gets ``<prefix>/static/labels.js``: the zh-CN names of categories, tiers,
skills, care types, ratings and escalation levels (``LABELS``), written from
``tongxin.contracts.enums`` — the scripts show the names notify's messages use, from the
one place they are kept."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response

from tongxin.contracts.enums import labels_zh
from tongxin.runtime.errors import ApiError

HTML = "text/html; charset=utf-8"
JS = "text/javascript; charset=utf-8"
LABELS_JS = (
    '"use strict";\n// written by tongxin.runtime.pages from tongxin.contracts.enums\n'
    f"const LABELS = {json.dumps(labels_zh(), ensure_ascii=False, sort_keys=True)};\n"
)


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

    async def asset(name: str) -> Response:
        if name == "labels.js":
            return Response(LABELS_JS, media_type=JS, headers=extra)
        media = assets.get(name)
        if media is None:
            raise ApiError(404, "not_found", "No such file.")
        return FileResponse(static / name, media_type=media, headers=extra)

    router.add_api_route("", root, methods=["GET"], include_in_schema=False)
    router.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    router.add_api_route("/static/{name}", asset, methods=["GET"], include_in_schema=False)
