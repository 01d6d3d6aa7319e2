"""The error answers of every route, stated in ``/openapi.json`` (SPEC §4).

FastAPI documents a route's success and, when it has parameters, a 422 in its own
``{"detail": …}`` shape — not what the platform answers. :func:`document_errors` adds, to
each route that does not document them itself, the SPEC error shape
``{"error": {"code", "message", "details"}}`` under the statuses the route can give:

- 400 — the route takes query parameters or a body (a bad cursor, an invalid form);
- 401, 403 — the route reads the bearer token (it lists the ``bearer`` security scheme,
  which the kernel's ``get_principal`` declares): a missing or invalid token, a role or
  object it may not touch;
- 404 — the route has path parameters (unknown id, or outside the caller's scope);
- 409 — the route changes state (POST, PUT, PATCH, DELETE): a conflict, an invalid
  transition, an idempotency key reused with another body;
- 422 — the route takes parameters or a body, or changes state: validation failed;
- 503 — every route but ``/healthz`` (liveness needs nothing else): the database is
  unreachable (``unavailable``) or, for a write, the service is overloaded (``busy``);
  nothing was stored and ``Retry-After`` says when to retry.

A route's own ``responses=`` entries win, so a route with other answers (429, 413, …)
documents them next to its decorator.

:func:`serve_docs` serves the interactive docs (``/docs``: Swagger UI, ``/redoc``: ReDoc)
with their scripts and styles from the service itself, under ``/docs-assets/``: on an
intranet without the public internet FastAPI's defaults (a public CDN, Google Fonts) leave a
blank page. The assets come from the ``fastapi-standalone-docs`` package (its static files
only; its patching of FastAPI is not used).
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


class ErrorInfo(BaseModel):
    """What went wrong: a stable code, a message, optional details."""

    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """Every error answer: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorInfo


DESCRIPTIONS = {
    400: "Bad request (e.g. an invalid cursor or form).",
    401: "No valid bearer token (or tracking code) where one is needed.",
    403: "The caller's role may not do this.",
    404: "No such object, or not one the caller may see.",
    409: "Conflict with the object's current state.",
    422: "The request is not valid.",
    503: "The database is unavailable, or the service is overloaded; nothing was stored. "
    "Retry after the seconds in Retry-After.",
}


LIVENESS = "/healthz"


def error_statuses(method: str, operation: dict[str, Any], path: str = "") -> list[int]:
    """The error statuses an OpenAPI ``operation`` can answer (see the module docstring)."""
    where = {p.get("in") for p in operation.get("parameters", [])}
    takes_input = bool(where & {"query", "header", "cookie"}) or "requestBody" in operation
    has_path = "path" in where
    writes = method.upper() in WRITES
    out: list[int] = []
    if takes_input:
        out.append(400)
    if operation.get("security"):
        out += [401, 403]
    if has_path:
        out.append(404)
    if writes:
        out.append(409)
    if takes_input or writes or has_path:
        out.append(422)
    if path != LIVENESS:
        out.append(503)
    return out


def document_errors(app: FastAPI) -> None:
    """Have ``app``'s OpenAPI document the error answers of each operation (on the first
    ``/openapi.json``, so routes added after this call are covered too)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = generate()
        add_error_responses(spec)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def add_error_responses(spec: dict[str, Any]) -> None:
    """Add the SPEC error answers to every operation of ``spec`` that lacks them."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    model = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, schema in model.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    schemas.setdefault("ErrorResponse", model)
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method.upper() not in {*WRITES, "GET", "HEAD"}:
                continue
            responses = operation.setdefault("responses", {})
            for status in error_statuses(method, operation, path):
                documented = responses.get(str(status))
                if documented is None or _is_fastapi_validation_error(documented):
                    responses[str(status)] = {
                        "description": DESCRIPTIONS[status],
                        "content": {"application/json": {"schema": ref}},
                    }


def _is_fastapi_validation_error(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


DOCS_ASSETS = "/docs-assets"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def _assets_dir() -> Path:
    """The package's ``static/`` folder: ``swagger/``, ``redoc/`` and ``fastapi/`` (favicon)."""
    return Path(str(files("fastapi_standalone_docs") / "static"))


def docs_security_headers(html: str) -> dict[str, str]:
    """A docs page may run its own inline script (Swagger UI's set-up, by its hash) and what
    the service serves, and talk only to its own origin. ReDoc injects its styles and starts
    its search worker from a ``blob:``; Swagger UI's icons are ``data:`` images."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    return {
        "content-security-policy": (
            f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
            "worker-src 'self' blob:; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        ),
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
    }


def _page(response: HTMLResponse) -> HTMLResponse:
    response.headers.update(docs_security_headers(bytes(response.body).decode()))
    return response


def serve_docs(app: FastAPI) -> None:
    """Serve ``app``'s ``/docs`` and ``/redoc`` with assets from the service itself (see the
    module docstring), in place of the FastAPI routes that load them from a public CDN."""
    docs_url, redoc_url = app.docs_url, app.redoc_url
    oauth2_url = app.swagger_ui_oauth2_redirect_url
    replaced = {docs_url, redoc_url, oauth2_url} - {None}
    app.router.routes[:] = [
        r for r in app.router.routes if getattr(r, "path", None) not in replaced
    ]
    app.mount(DOCS_ASSETS, StaticFiles(directory=_assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    if docs_url:

        async def swagger_ui(request: Request) -> HTMLResponse:
            base = root(request)
            return _page(
                get_swagger_ui_html(
                    openapi_url=base + openapi_url,
                    title=f"{app.title} - Swagger UI",
                    swagger_js_url=f"{base}{DOCS_ASSETS}/swagger/swagger-ui-bundle.js",
                    swagger_css_url=f"{base}{DOCS_ASSETS}/swagger/swagger-ui.css",
                    swagger_favicon_url=f"{base}{DOCS_ASSETS}/fastapi/favicon.png",
                    oauth2_redirect_url=base + oauth2_url if oauth2_url else None,
                    init_oauth=app.swagger_ui_init_oauth,
                    swagger_ui_parameters=app.swagger_ui_parameters,
                )
            )

        app.add_route(docs_url, swagger_ui, include_in_schema=False)
        if oauth2_url:

            async def swagger_ui_redirect(request: Request) -> HTMLResponse:
                return _page(get_swagger_ui_oauth2_redirect_html())

            app.add_route(oauth2_url, swagger_ui_redirect, include_in_schema=False)
    if redoc_url:

        async def redoc(request: Request) -> HTMLResponse:
            base = root(request)
            return _page(
                get_redoc_html(
                    openapi_url=base + openapi_url,
                    title=f"{app.title} - ReDoc",
                    redoc_js_url=f"{base}{DOCS_ASSETS}/redoc/redoc.standalone.js",
                    redoc_favicon_url=f"{base}{DOCS_ASSETS}/fastapi/favicon.png",
                    with_google_fonts=False,
                )
            )

        app.add_route(redoc_url, redoc, include_in_schema=False)
