"""Split a byte stream into numbered JSONL lines without ever holding more than one line, and
decode them: the one way the validator and the trainer both read training data.

A line longer than the limit is reported and skipped without being buffered. Lines end at LF only
(a bare CR is JSON whitespace, never a line end), and JSON nested deeper than MAX_JSON_DEPTH is
refused: a decoder with a recursion limit would otherwise fail (or crash) on it somewhere downstream.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from trainer.data.problems import Problem

JSONL_HINT = "Expected file to have JSONL format, where every line is a valid JSON dictionary."
# Arrays and objects inside one another, counting the line's own object; real chat data stays far
# below (a conversation with tool calls and content parts is about 6 deep).
MAX_JSON_DEPTH = 64


class JsonTooDeep(ValueError):
    """The JSON value nests arrays and objects deeper than MAX_JSON_DEPTH."""


def may_be_too_deep(data: bytes | str) -> bool:
    """Cheap and conservative: fewer brackets than the limit cannot nest deeper than it."""
    if isinstance(data, bytes):
        return data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH
    return data.count("[") + data.count("{") > MAX_JSON_DEPTH


_NOT_OPENERS = bytes(b for b in range(256) if b not in b"[{\n")


def openers_per_line(data: bytes) -> list[int]:
    """How many `[` and `{` each LF-separated line of `data` holds (strings included)."""
    return list(map(len, data.translate(None, _NOT_OPENERS).split(b"\n")))


def _deeper_than(obj: object, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def decode_json(data: bytes | str, decoder: msgspec.json.Decoder[Any]) -> Any:
    """Decode with `decoder` (untyped); raises msgspec.DecodeError, UnicodeDecodeError or JsonTooDeep."""
    try:
        obj = decoder.decode(data)
    except RecursionError as exc:  # deeper than the interpreter's recursion limit
        raise JsonTooDeep from exc
    if isinstance(obj, (dict, list)) and may_be_too_deep(data) and _deeper_than(obj, MAX_JSON_DEPTH):
        raise JsonTooDeep
    return obj


@dataclass(frozen=True)
class Line:
    number: int
    data: bytes  # without the trailing newline


class LineSplitter:
    """Cuts chunks into complete lines, numbered from 1; a too-long line comes out as None."""

    def __init__(self, max_line_bytes: int, first_line: int = 1) -> None:
        self.max_line_bytes = max_line_bytes
        self._partial = bytearray()
        self._number = first_line - 1
        self._skipping = False  # inside an over-long line: its bytes are dropped, not buffered

    def feed(self, chunk: bytes) -> tuple[int, list[bytes | None]]:
        """Returns the number of the first complete line and the complete lines in `chunk`."""
        first = self._number + 1
        parts = chunk.split(b"\n")
        tail = parts.pop()
        lines: list[bytes | None] = []
        if parts:
            head = parts[0]
            if self._skipping or len(self._partial) + len(head) > self.max_line_bytes:
                lines.append(None)
            else:
                lines.append(bytes(self._partial) + head if self._partial else head)
            self._partial.clear()
            self._skipping = False
            limit = self.max_line_bytes
            lines += [p if len(p) <= limit else None for p in parts[1:]]
        if not self._skipping:
            self._partial += tail
            if len(self._partial) > self.max_line_bytes:
                self._skipping = True
                self._partial.clear()
        self._number += len(lines)
        return first, lines

    def finish(self) -> tuple[int, list[bytes | None]]:
        first = self._number + 1
        lines: list[bytes | None] = []
        if self._skipping:
            lines.append(None)
        elif self._partial:
            lines.append(bytes(self._partial))
        self._partial.clear()
        self._skipping = False
        self._number += len(lines)
        return first, lines


def line_too_long(number: int, limit: int) -> Problem:
    return Problem(
        number, None, None, "line_too_long", f"Line {number} is longer than the limit of {limit} bytes."
    )


def decode_line(line: Line, decoder: msgspec.json.Decoder[object]) -> tuple[object, Problem | None]:
    """JSON-decode one line; the problem (if any) uses OpenAI's upload wording."""
    try:
        obj = decode_json(line.data, decoder)
    except JsonTooDeep:
        return None, Problem(
            line.number,
            None,
            None,
            "json_too_deep",
            f"{JSONL_HINT} Line {line.number} nests arrays and objects deeper than {MAX_JSON_DEPTH} levels.",
        )
    except (msgspec.DecodeError, UnicodeDecodeError):
        # Tell the two causes apart only on the (rare) failure path.
        try:
            line.data.decode("utf-8")
        except UnicodeDecodeError:
            return None, Problem(
                line.number,
                None,
                None,
                "invalid_utf8",
                f"{JSONL_HINT} Line {line.number} is not valid UTF-8.",
            )
        return None, Problem(
            line.number, None, None, "invalid_json", f"{JSONL_HINT} Line {line.number} is not valid JSON."
        )
    if not isinstance(obj, dict):
        return None, Problem(
            line.number, None, None, "not_a_dict", f"{JSONL_HINT} Line {line.number} is not a dictionary."
        )
    return obj, None


class JsonlLineChecker:
    """The cheap check: every non-blank line is a JSON object. Records the first problem only."""

    def __init__(self, max_line_bytes: int = 16 * 1024 * 1024) -> None:
        self._splitter = LineSplitter(max_line_bytes)
        self._decoder: msgspec.json.Decoder[object] = msgspec.json.Decoder()
        self._first: Problem | None = None
        self._seen_line = False

    def _check(self, first: int, lines: list[bytes | None]) -> None:
        for number, data in enumerate(lines, first):
            if self._first is not None:
                return
            if data is None:
                self._first = line_too_long(number, self._splitter.max_line_bytes)
            elif data.strip():
                self._seen_line = True
                _, self._first = decode_line(Line(number, data), self._decoder)

    def feed(self, chunk: bytes) -> None:
        if self._first is None:
            self._check(*self._splitter.feed(chunk))

    def finish(self) -> Problem | None:
        if self._first is None:
            self._check(*self._splitter.finish())
        if self._first is None and not self._seen_line:
            self._first = Problem(0, None, None, "empty_file", "The file is empty: it has no JSONL lines.")
        return self._first


def iter_records(path: str | Path, chunk_size: int = 1 << 20) -> Iterator[dict[str, Any]]:
    """The trainer's reading of a JSONL file the validator accepted: the same line splitting, the
    same blank-line rule and the same decoder. Raises ValueError on a line the validator refuses."""
    splitter = LineSplitter(sys.maxsize)
    decoder: msgspec.json.Decoder[object] = msgspec.json.Decoder()

    def decoded(first: int, lines: list[bytes | None]) -> Iterator[dict[str, Any]]:
        for number, data in enumerate(lines, first):
            assert data is not None  # no line is longer than sys.maxsize
            if not data.strip():
                continue
            obj, problem = decode_line(Line(number, data), decoder)
            if problem is not None:
                raise ValueError(problem.message)
            yield obj  # type: ignore[misc]

    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            yield from decoded(*splitter.feed(chunk))
    yield from decoded(*splitter.finish())


def read_records(path: str | Path) -> list[dict[str, Any]]:
    return list(iter_records(path))
