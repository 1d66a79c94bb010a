"""Hostile inputs for the files and uploads endpoints, and raw HTTP to send what the SDK cannot.

The JSONL corpus is shared by the server tests (tests/api/test_hostile_input.py) and the check that
the trainer reads whatever the validator accepts (tests/trainer/test_reads_what_validator_accepts.py).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

from tests.support.data import chat_example, chat_jsonl
from tests.support.server import RunningServer

DEEP = 100_000


def _line(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _valid(n: int) -> list[bytes]:
    return [_line(chat_example(i)) for i in range(n)]


def _with_user_content(content_json: bytes) -> bytes:
    """A chat example whose user content is the raw JSON text `content_json`."""
    head = b'{"messages": [{"role": "user", "content": '
    return head + content_json + b'}, {"role": "assistant", "content": "ok"}]}'


def _tool_call_line(arguments: str) -> bytes:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    return _line(
        {
            "messages": [
                {"role": "user", "content": "call it"},
                {"role": "assistant", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "done"},
                {"role": "assistant", "content": "ok"},
            ]
        }
    )


def _cr_whitespace(obj: object) -> bytes:
    """The record with a bare CR after every structural comma and colon (valid JSON whitespace)."""
    return json.dumps(obj, separators=(",\r", ":\r")).encode()


def _nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    bad_line: int | None  # None: a valid fine-tune file; else the line the refusal must name
    examples: int = 0  # for a valid file: how many examples the trainer must read

    @property
    def accepted(self) -> bool:
        return self.bad_line is None


def _file(*parts: bytes | list[bytes], end: bytes = b"\n") -> bytes:
    lines = [line for part in parts for line in (part if isinstance(part, list) else [part])]
    return end.join(lines) + end


def image_part_line(url_json: bytes) -> bytes:
    return _with_user_content(b'[{"type": "image_url", "image_url": ' + url_json + b"}]")


_DEEP_OBJECT = b'{"a":' * DEEP + b"1" + b"}" * DEEP
_WEIGHTS = _line(
    {
        "messages": [
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": "no", "weight": 0},
            {"role": "user", "content": "again"},
            {"role": "assistant", "content": "yes", "weight": 1},
        ]
    }
)
_TEXT_PARTS = b'[{"type": "text", "text": "hi"}, {"type": "text", "text": "!"}]'

CORPUS = [
    Case("deep_arrays_whole_line", _file(_valid(4), _nested(DEEP), _valid(5)), 5),
    Case("deep_objects_whole_line", _file(_valid(2), _DEEP_OBJECT), 3),
    Case("deep_in_content", _file(_valid(3), _with_user_content(_nested(DEEP, b'"x"'))), 4),
    Case("deep_object_in_content", _file(_with_user_content(_DEEP_OBJECT)), 1),
    # Below the decoder's recursion limit, but past ours: refused all the same.
    Case("moderately_deep_in_content", _file(_valid(10), _with_user_content(_nested(500))), 11),
    Case("deep_in_image_part", _file(_valid(1), image_part_line(_nested(DEEP))), 2),
    # Decodes as a typed example (image_url is free-form) yet nests 500 deep: the fast path must see it.
    Case("moderately_deep_in_image_part", _file(_valid(20), image_part_line(_nested(500)), _valid(5)), 21),
    Case("deep_tool_call_arguments", _file(_valid(2), _tool_call_line("[" * DEEP + "]" * DEEP)), 3),
    Case("deep_after_many_valid_lines", _file(_valid(300), _nested(2000)), 301),
    Case("bare_cr_whitespace", _file([_cr_whitespace(chat_example(i)) for i in range(10)]), None, 10),
    Case("crlf_line_ends", _file(_valid(10), end=b"\r\n"), None, 10),
    Case("bare_cr_line_ends", _file(_valid(10), end=b"\r"), 1),
    Case(
        "line_separators_in_strings",
        _file(_valid(9), _with_user_content('"a\u2028b\u2029c\u0085d"'.encode())),
        None,
        10,
    ),
    Case("escaped_controls", _file(_valid(9), _with_user_content(b'"a\\u0000b\\u001fc"')), None, 10),
    Case("raw_nul_in_string", _file(_valid(3), _with_user_content(b'"a\x00b"')), 4),
    Case("raw_line_feed_in_string", _file(_valid(3), _with_user_content(b'"a\nb"')), 4),
    Case("nan", _file(_valid(2), b'{"messages": [], "x": NaN}'), 3),
    Case("huge_exponent", _file(_valid(2), b'{"messages": [], "x": 1e999}'), 3),
    Case("lone_surrogate", _file(_valid(6), _with_user_content(b'"\\ud800"')), 7),
    Case("invalid_utf8", _file(_valid(6), _with_user_content(b'"\xff\xfe"')), 7),
    Case("utf8_bom", b"\xef\xbb\xbf" + chat_jsonl(10), 1),
    Case("two_values_on_a_line", _file(_valid(3), _valid(1)[0] + b" " + _valid(1)[0]), 4),
    Case("top_level_array", _file(_valid(3), b"[" + _valid(1)[0] + b"]"), 4),
    Case("duplicate_keys", _file(_valid(9), _line(chat_example(1))[:-1] + b', "messages": []}'), 10),
    Case("blank_and_whitespace_lines", _file(_valid(5), [b"", b" \t\r", b"\x0c"], _valid(5)), None, 10),
    Case("content_parts_beside_strings", _file(_valid(9), _with_user_content(_TEXT_PARTS)), None, 10),
    Case("tool_calls_and_weights", _file(_valid(8), _tool_call_line('{"a": [null]}'), _WEIGHTS), None, 10),
    Case("no_final_newline", _file(_valid(10))[:-1], None, 10),
]


def jsonl_errors_ok(body: dict[str, Any], line: int) -> bool:
    err = body.get("error", {})
    return (
        err.get("type") == "invalid_request_error"
        and err.get("param") == "file"
        and err.get("code") == "invalid_file_format"
        and f"Line {line}" in err.get("message", "")
    )


# --- raw multipart bodies -------------------------------------------------------------------

BOUNDARY = "hostileboundary7MA4YWxkTrZu0gW"


def field(name: str, value: str) -> bytes:
    return f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()


def file_field(name: str, filename: bytes, data: bytes, ctype: str = "application/jsonl") -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="'.encode()
    return head + filename + f'"\r\nContent-Type: {ctype}\r\n\r\n'.encode() + data + b"\r\n"


def closing() -> bytes:
    return f"--{BOUNDARY}--\r\n".encode()


@dataclass
class RawResponse:
    status: int | None  # None: the server closed without answering
    body: dict[str, Any] | None


def raw_post(
    server: RunningServer,
    path: str,
    api_key: str,
    body: bytes,
    *,
    content_length: int | None = None,
    chunked: bool = False,
    half_close: bool = False,
    timeout: float = 30,
) -> RawResponse:
    """POST over a plain socket: the body may be shorter than its Content-Length or lack its
    closing boundary, which no HTTP library sends on purpose. `half_close` ends the sending side
    after the body (uvicorn then closes the connection: the request has lost its client)."""
    host, port = server.url.removeprefix("http://").split(":")
    framing = (
        "Transfer-Encoding: chunked\r\n"
        if chunked
        else f"Content-Length: {len(body) if content_length is None else content_length}\r\n"
    )
    head = (
        f"POST /v1{path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {api_key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}Connection: close\r\n\r\n"
    )
    payload = body
    if chunked:
        payload = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode() + payload)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    if not received:
        return RawResponse(None, None)
    status_line, _, rest = received.partition(b"\r\n")
    status = int(status_line.split()[1])
    headers, _, content = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in headers.lower():
        content = _dechunk(content)
    return RawResponse(status, json.loads(content) if content else None)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out
