"""The staff console (``/console/``): static pages plus a same-origin proxy to routing and
volunteer, so the browser talks to one origin and needs no CORS (docs/console.md).

A place of its own, not part of any service: a service's app (today intake's, the front
door) mounts :data:`router` and calls :func:`start` in its lifespan with the upstreams.

The proxy forwards ``/console/api/{routing|volunteer}/v1/...`` with the caller's own
``Authorization`` header: routing and volunteer authorize every call exactly as they
would a direct one; the proxy adds no privilege of its own. Only ``/v1/`` paths are
forwarded (never ``/metrics`` or health endpoints). A signed-in browser sends no header but
the session cookie (tongxin.accounts): the proxy then forwards the cookie's token as the
bearer — only for a same-site request, and for a write only with the session's CSRF token
(403 otherwise), so another site's page cannot act with the cookie. When an upstream cannot
be reached or times out, the answer is the SPEC error shape with 502/504.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
from fastapi import APIRouter, Request, Response

from tongxin.runtime.auth import CurrentPrincipal, Principal, TokenVerifier
from tongxin.runtime.errors import ApiError
from tongxin.runtime.pages import serve_static_page
from tongxin.runtime.service import ServiceRuntime

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# the files the console serves, and their media types (nothing else under /console/)
ASSETS = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
}
# the page runs only its own script and talks only to its own origin
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}
REQUEST_HEADERS = ("authorization", "content-type", "accept", "idempotency-key")
RESPONSE_HEADERS = ("content-type", "x-next-cursor", "retry-after")
METHODS = ["GET", "POST", "PATCH", "DELETE"]
MAX_UPSTREAM_BYTES = 4 * 1024 * 1024

router = APIRouter(prefix="/console", include_in_schema=False)


class ConsoleProxy:
    """Forwards console calls to routing and volunteer over one pooled HTTP client."""

    def __init__(
        self,
        upstreams: dict[str, str],
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.upstreams = {name: url.rstrip("/") for name, url in upstreams.items()}
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            transport=transport,
            follow_redirects=False,
        )

    async def forward(self, service: str, path: str, request: Request) -> Response:
        """The upstream's answer to this request, or a SPEC error when it failed."""
        base = self.upstreams.get(service)
        if base is None or not path.startswith("v1/") or ".." in path.split("/"):
            raise ApiError(404, "not_found", "No such console API.")
        headers = {k: v for k in REQUEST_HEADERS if (v := request.headers.get(k)) is not None}
        if "authorization" not in headers:
            verifier: TokenVerifier = request.app.state.verifier
            session = await verifier.cookie_session(request)  # 403: cross-site, no CSRF
            if session is not None:
                headers["authorization"] = f"Bearer {session[0]}"
        body = await request.body()
        try:
            upstream = await self.client.request(
                request.method,
                f"{base}/{path}",
                params=request.url.query or None,
                headers=headers,
                content=body or None,
            )
        except httpx.TimeoutException as exc:
            log.warning("console upstream timeout", extra={"service": service})
            raise ApiError(
                504,
                "upstream_timeout",
                f"The {service} service did not answer in time; try again.",
                {"service": service},
            ) from exc
        except httpx.HTTPError as exc:
            log.warning(
                "console upstream unavailable", extra={"service": service, "error": repr(exc)}
            )
            raise ApiError(
                502,
                "upstream_unavailable",
                f"The {service} service is unavailable; try again shortly.",
                {"service": service},
            ) from exc
        if len(upstream.content) > MAX_UPSTREAM_BYTES:
            raise ApiError(502, "upstream_too_large", "The answer is too large to show.")
        out = {k: v for k in RESPONSE_HEADERS if (v := upstream.headers.get(k)) is not None}
        return Response(upstream.content, upstream.status_code, headers=out)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self.client.aclose()


def start(rt: ServiceRuntime, upstreams: dict[str, str], timeout_s: float) -> ConsoleProxy:
    """Build the console's proxy client in the lifespan; it closes when the service stops."""
    proxy = ConsoleProxy(upstreams, timeout_s)
    rt.extra["console_proxy"] = proxy
    rt.closers.append(proxy.aclose)
    return proxy


serve_static_page(router, "/console", STATIC, ASSETS, SECURITY_HEADERS)


@router.get("/api/me")
async def console_me(principal: CurrentPrincipal) -> dict[str, str | None]:
    """Who the pasted token (or the session cookie) speaks for, verified here, so a bad
    token fails at sign-in."""
    return _claims(principal)


def _claims(p: Principal) -> dict[str, str | None]:
    return {"sub": p.sub, "role": p.role.value, "unit": p.unit}


@router.api_route("/api/{service}/{path:path}", methods=METHODS)
async def console_proxy(service: str, path: str, request: Request) -> Response:
    """Forward to routing or volunteer with the caller's own bearer token (or session)."""
    proxy: ConsoleProxy = request.app.state.rt.extra["console_proxy"]
    return await proxy.forward(service, path, request)
