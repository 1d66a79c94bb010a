"""Streaming `multipart/form-data`: the request body is parsed as it arrives, file bytes are yielded
chunk by chunk and never held whole (Starlette's `UploadFile` would spool the entire body first).

A body is complete only with its closing boundary: one that ends before it (a cut connection, a
body shorter than its Content-Length) raises InvalidRequest after the last bytes, so whoever
consumes the events discards what it stored. A field or file sent twice is refused: taking either
one would let a form say one thing to the checks and another to what is stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from api.errors import InvalidRequest, PayloadTooLarge

MAX_FIELD_BYTES = 64 * 1024


@dataclass
class FieldPart:
    name: str
    value: str


@dataclass
class FilePart:
    """A file part has started; its bytes follow as FileChunk events until FileEnd."""

    name: str
    filename: str
    content_type: str


@dataclass
class FileChunk:
    data: bytes


@dataclass
class FileEnd:
    pass


Event = FieldPart | FilePart | FileChunk | FileEnd


class _Collector:
    """Callbacks for python-multipart's push parser; events are drained after every write()."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._field: FieldPart | None = None
        self._field_buf = bytearray()
        self._in_file = False
        self._names: set[str] = set()
        self.ended = False  # the closing boundary was seen

    def on_end(self) -> None:
        self.ended = True

    def on_part_begin(self) -> None:
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name in self._names:
            raise InvalidRequest(f"The form field '{name}' was sent more than once.", param=name or None)
        self._names.add(name)
        if b"filename" in options:
            filename = options[b"filename"].decode("utf-8", "replace")
            ctype = self._headers.get(b"content-type", b"application/octet-stream").decode("latin-1")
            self._in_file = True
            self.events.append(FilePart(name=name, filename=filename, content_type=ctype))
        else:
            self._in_file = False
            self._field = FieldPart(name=name, value="")
            self._field_buf = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.events.append(FileChunk(bytes(data[start:end])))
            return
        self._field_buf += data[start:end]
        if len(self._field_buf) > MAX_FIELD_BYTES:
            raise InvalidRequest(
                "A form field is too large.", param=self._field.name if self._field else None
            )

    def on_part_end(self) -> None:
        if self._in_file:
            self.events.append(FileEnd())
            self._in_file = False
        elif self._field is not None:
            self._field.value = self._field_buf.decode("utf-8", "replace")
            self.events.append(self._field)
            self._field = None


async def iter_multipart(request: Request, *, max_body_bytes: int) -> AsyncIterator[Event]:
    """Parse the request body incrementally. Raises InvalidRequest / PayloadTooLarge."""
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in options:
        raise InvalidRequest("Expected a multipart/form-data body.")
    collector = _Collector()
    parser = MultipartParser(
        options[b"boundary"],
        callbacks={
            "on_part_begin": collector.on_part_begin,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_headers_finished": collector.on_headers_finished,
            "on_end": collector.on_end,
        },
    )
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_body_bytes:
                raise PayloadTooLarge(f"The request body exceeds the maximum of {max_body_bytes} bytes.")
            try:
                parser.write(chunk)
            except InvalidRequest:
                raise
            except Exception as exc:  # python-multipart raises its own parse errors
                raise InvalidRequest("Malformed multipart/form-data body.") from exc
            if collector.events:
                events, collector.events = collector.events, []
                for event in events:
                    yield event
        parser.finalize()
    except ClientDisconnect as exc:
        raise InvalidRequest("The client disconnected before the upload finished.") from exc
    if not collector.ended:
        # python-multipart's finalize() does not check this itself.
        raise InvalidRequest(
            "The multipart/form-data body ended before its closing boundary: the request is incomplete."
        )
    for event in collector.events:
        yield event


async def file_bytes(
    events: AsyncIterator[Event], *, limit: int, param: str, what: str
) -> AsyncIterator[bytes]:
    """The current file part's bytes, up to its end. Raises PayloadTooLarge past `limit` bytes."""
    total = 0
    async for event in events:
        if isinstance(event, FileEnd):
            return
        if isinstance(event, FileChunk):
            total += len(event.data)
            if total > limit:
                raise PayloadTooLarge(f"{what} is too large: the maximum is {limit} bytes.", param=param)
            yield event.data


async def skip_file(events: AsyncIterator[Event]) -> None:
    """Pass over the current file part (one the endpoint does not take)."""
    async for event in events:
        if isinstance(event, FileEnd):
            return


def multipart_openapi(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """`openapi_extra` for a route that parses its multipart body itself (so FastAPI cannot infer it)."""
    schema = {"type": "object", "required": required, "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


async def drain(events: AsyncIterator[Event]) -> None:
    """Read the rest of the body so the client can read our error instead of a broken pipe."""
    async for _ in events:
        pass
