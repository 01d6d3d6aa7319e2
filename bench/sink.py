"""A tiny, fast HTTP sink for notify's webhook: asyncio streams, keep-alive, always ``200``.

It only counts what it receives; it never parses the body.
"""

from __future__ import annotations

import asyncio
import contextlib

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\ncontent-type: text/plain\r\n\r\n"
MAX_HEAD = 64 * 1024


class WebhookSink:
    """Answers every request on 127.0.0.1 with ``200`` (HTTP/1.1, keep-alive)."""

    def __init__(self) -> None:
        self.received = 0
        self.bytes = 0
        self.server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """Where notify should POST."""
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def start(self) -> WebhookSink:
        """Listen on a free loopback port."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_HEAD)
        return self

    async def stop(self) -> None:
        """Close the listener and every open connection."""
        if self.server is not None:
            self.server.close()
            for w in list(self._conns):
                w.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, chunked, close = _parse_head(head)
                if chunked:
                    self.bytes += await _read_chunked(reader)
                elif length:
                    await reader.readexactly(length)
                    self.bytes += length
                self.received += 1
                writer.write(OK)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._conns.discard(writer)
            writer.close()


def _parse_head(head: bytes) -> tuple[int, bool, bool]:
    """(content-length, chunked?, connection: close?) of a request head.

    >>> _parse_head(b"POST /hook HTTP/1.1\\r\\nContent-Length: 12\\r\\n\\r\\n")
    (12, False, False)
    >>> _parse_head(b"POST / HTTP/1.0\\r\\n\\r\\n")
    (0, False, True)
    """
    lines = head.split(b"\r\n")
    close = lines[0].endswith(b"HTTP/1.0")
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value.strip() or b"0")
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif key == b"connection":
            close = value.strip().lower() == b"close"
    return length, chunked, close


async def _read_chunked(reader: asyncio.StreamReader) -> int:
    total = 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            # trailers end with an empty line
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return total
        await reader.readexactly(size + 2)
        total += size
