"""Real local servers for notify's channels: a scripted HTTP server and an SMTP server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tongxin.devstack.procs import free_port


@dataclass(frozen=True)
class Hit:
    """One request the server received."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """What to answer: a status, a body, and how long to hang first."""

    status: int = 200
    body: bytes = b'{"errcode":0,"errmsg":"ok"}'
    delay: float = 0.0


def _request_id(hit: Hit) -> str | None:
    try:
        doc = hit.json()
    except ValueError:
        return None
    return doc.get("request_id") if isinstance(doc, dict) else None


@dataclass
class ScriptedHTTP:
    """A threaded HTTP server that records POSTs and answers from per-key scripts.

    ``script(key, [Reply, ...])`` makes the next requests with that key (by default the
    JSON body's ``request_id``) get those replies in order; afterwards ``default``.
    """

    default: Reply = field(default_factory=Reply)
    key: Callable[[Hit], str | None] = _request_id
    hits: list[Hit] = field(default_factory=list)
    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, key: str, replies: list[Reply]) -> None:
        with self._lock:
            self.scripts[key] = list(replies)

    def _reply_for(self, hit: Hit) -> Reply:
        k = self.key(hit)
        with self._lock:
            queue = self.scripts.get(k) if k is not None else None
            return queue.pop(0) if queue else self.default

    def start(self) -> ScriptedHTTP:
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                probe = Hit(
                    parts.path, query, {k.lower(): v for k, v in self.headers.items()}, raw, 0
                )
                reply = srv._reply_for(probe)
                if reply.delay:
                    time.sleep(reply.delay)
                with srv._lock:
                    srv.hits.append(
                        Hit(probe.path, probe.query, probe.headers, probe.body, reply.status)
                    )
                try:
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (timeout)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def matching(self, **kv: Any) -> list[Hit]:
        """Hits whose JSON body has these field values."""
        out = []
        with self._lock:
            hits = list(self.hits)
        for h in hits:
            try:
                doc = h.json()
            except ValueError:
                continue
            if isinstance(doc, dict) and all(doc.get(k) == v for k, v in kv.items()):
                out.append(h)
        return out


class _Mailbox:
    def __init__(self, reply: Callable[[Envelope], str]) -> None:
        self.messages: list[Envelope] = []
        self.reply = reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        answer = self.reply(envelope)
        if answer.startswith("250"):
            self.messages.append(envelope)
        return answer


class SmtpServer:
    """aiosmtpd on a free port; ``reply`` decides each message's answer (default 250)."""

    def __init__(self, reply: Callable[[Envelope], str] | None = None) -> None:
        self.port = free_port()
        self.box = _Mailbox(reply or (lambda _e: "250 OK"))
        self.controller = Controller(self.box, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[Envelope]:
        return self.box.messages

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
