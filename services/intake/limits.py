"""Abuse limits: oversize bodies get 413 before anything parses them (an ASGI middleware);
anonymous submissions and Open311 reads are rate-limited per client (token buckets, 429
with Retry-After)."""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException, Request

from tongxin.runtime.auth import OptionalPrincipal
from tongxin.runtime.errors import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# An anonymous read costs this much of a token, from a bucket of its own: five times the
# submission rate and burst (a GeoReport client polls; a read writes nothing).
READ_COST = 0.2


def _once(message: Message) -> Receive:
    async def receive() -> Message:
        return message

    return receive


class BodyLimitMiddleware:
    """Buffers a request body up to ``max_bytes``; larger ones get 413 in the SPEC shape.

    ``Content-Length`` is checked first; a chunked body is counted as it arrives, so a
    client cannot slip past the limit by leaving the length out.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = False
            if too_big:
                await self._refuse(send)
                return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                # the client went away: let the app see the disconnect
                await self.app(scope, _once(message), send)
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(body)
            more = bool(message.get("more_body", False))
        buffered: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return buffered
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            error_body(
                "payload_too_large",
                f"The request body is larger than {self.max_bytes} bytes.",
                {"max_bytes": self.max_bytes},
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class TokenBucketLimiter:
    """Per-client token buckets: ``burst`` at once, refilled at ``per_minute``.

    In memory, so each replica counts on its own (N replicas allow up to N times the
    rate); at most ``max_clients`` buckets are kept, the least recently seen dropped first
    (a dropped client just starts again with a full bucket).
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens of ``client``: 0 when allowed, else seconds until they are
        back."""
        now = self.clock()
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= cost - 1e-9:  # fractional costs leave a little float drift behind
            tokens = max(0.0, tokens - cost)
        else:
            wait = (cost - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def client_address(request: Request, trust_forwarded_for: bool) -> str:
    """Who is asking: the peer address, or the proxy-appended X-Forwarded-For entry."""
    if trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.client.host if request.client else "unknown"


def limit_anonymous(request: Request, *, read: bool = False) -> None:
    """429 (with Retry-After) when this anonymous client submits — or, ``read``, reads —
    too fast; nothing when the limit is off. The caller decides who is anonymous."""
    limiter: TokenBucketLimiter | None = getattr(request.app.state, "anonymous_limiter", None)
    if limiter is None:
        return
    trust = bool(getattr(request.app.state, "trust_forwarded_for", False))
    client = client_address(request, trust)
    wait = limiter.take(f"read:{client}", READ_COST) if read else limiter.take(client)
    if wait > 0:
        retry_after = max(1, math.ceil(wait))
        what = "reads" if read else "submissions"
        raise HTTPException(
            429,
            f"Too many {what} from this client; try again in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )


async def anonymous_limit(request: Request, principal: OptionalPrincipal) -> None:
    """FastAPI dependency: 429 (with Retry-After) when an anonymous client submits too fast.

    Callers with a token (staff, platforms) are accountable and not limited here.
    """
    if principal is None:
        limit_anonymous(request)
