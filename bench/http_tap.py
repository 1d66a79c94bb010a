"""A loopback TCP tap for benchmarks: it forwards bytes to an upstream HTTP/1.1 server unchanged and
records, per connection, the requests that went through (head and body) as the upstream saw them.

bench.serve puts it in front of vLLM to compare what vLLM receives straight from a client with what
it receives through ftapi: the exact bodies, the headers, and how many connections carry them.
It parses only what it needs (Content-Length bodies); a chunked body is recorded as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TappedRequest:
    connection: int
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class HttpTap:
    upstream_host: str
    upstream_port: int
    requests: list[TappedRequest] = field(default_factory=list)
    connections: int = 0
    _server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def reset(self) -> None:
        self.requests.clear()
        self.connections = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            writer.close()
            return
        parser = _RequestParser(number, self.requests)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, inspect: bool) -> None:
            try:
                while data := await src.read(65536):
                    if inspect:
                        parser.feed(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))


class _RequestParser:
    """Splits one connection's client bytes into requests (Content-Length framing)."""

    def __init__(self, connection: int, out: list[TappedRequest]) -> None:
        self.connection = connection
        self.out = out
        self.buffer = b""
        self.broken = False

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            lines = self.buffer[:head_end].decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", ""):
                self.out.append(TappedRequest(self.connection, method, path, headers, b"<chunked>"))
                self.broken = True
                return
            length = int(headers.get("content-length", "0"))
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            self.out.append(
                TappedRequest(self.connection, method, path, headers, self.buffer[head_end + 4 : end])
            )
            self.buffer = self.buffer[end:]
