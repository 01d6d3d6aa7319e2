"""The volunteer page (``/v/``): a zh-CN, phone-first page where a red-vest volunteer signs
in, answers the tasks offered to them before the accept-by deadline, completes them with
hours and a note, and sees their hours, squads and care visits (docs/volunteer_page.md).

A place of its own, not part of any service, like the resident page and the staff console:
a service's app (intake's, the front door, which also mounts the accounts) mounts
:data:`router`. The page is static — one HTML file, one script, one stylesheet. It signs in
through ``/v1/session`` (the accounts' HttpOnly cookie, the console's) and talks to the
volunteer service through the console's same-origin proxy (``/console/api/volunteer/v1/…``),
which forwards the cookie's token as the bearer: the volunteer service authorizes every call
exactly as it would a direct one with the volunteer's own token. Nothing is served here but
the files.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from tongxin.runtime.pages import serve_static_page

STATIC = Path(__file__).parent / "static"
PREFIX = "/v"
# the files the page serves, and their media types (nothing else under /v/static/)
ASSETS = {
    "volunteer.css": "text/css; charset=utf-8",
    "volunteer.js": "text/javascript; charset=utf-8",
}
# the page runs only its own script and talks only to its own origin; it asks the device
# for nothing
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "permissions-policy": "geolocation=(), camera=(), microphone=(), payment=()",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}

router = APIRouter(prefix=PREFIX, include_in_schema=False)


serve_static_page(router, PREFIX, STATIC, ASSETS, SECURITY_HEADERS)
