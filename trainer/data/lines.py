"""Split a byte stream into numbered JSONL lines without ever holding more than one line.

A line longer than the limit is reported and skipped without being buffered.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

from trainer.data.problems import Problem

JSONL_HINT = "Expected file to have JSONL format, where every line is a valid JSON dictionary."


@dataclass(frozen=True)
class Line:
    number: int
    data: bytes  # without the trailing newline


class LineSplitter:
    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._partial = bytearray()
        self._number = 0
        self._skipping = False  # inside an over-long line
        self.too_long: list[int] = []

    def feed(self, chunk: bytes) -> Iterator[Line]:
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                rest = chunk[start:]
                if not self._skipping:
                    self._partial += rest
                    if len(self._partial) > self.max_line_bytes:
                        self._skipping = True
                        self._partial.clear()
                return
            piece = chunk[start:nl]
            start = nl + 1
            self._number += 1
            if self._skipping or len(self._partial) + len(piece) > self.max_line_bytes:
                self.too_long.append(self._number)
                self._skipping = False
                self._partial.clear()
                continue
            if self._partial:
                self._partial += piece
                data = bytes(self._partial)
                self._partial.clear()
            else:
                data = piece
            yield Line(self._number, data)

    def finish(self) -> Iterator[Line]:
        if self._skipping:
            self._number += 1
            self.too_long.append(self._number)
        elif self._partial:
            self._number += 1
            yield Line(self._number, bytes(self._partial))
        self._partial.clear()
        self._skipping = False


def line_too_long(number: int, limit: int) -> Problem:
    return Problem(
        number, None, None, "line_too_long", f"Line {number} is longer than the limit of {limit} bytes."
    )


def decode_line(line: Line, decoder: msgspec.json.Decoder[object]) -> tuple[object, Problem | None]:
    """JSON-decode one line; the problem (if any) uses OpenAI's upload wording."""
    try:
        obj = decoder.decode(line.data)
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

    def _check(self, lines: Iterator[Line]) -> None:
        for line in lines:
            if self._first is not None:
                continue
            if not line.data.strip():
                continue
            self._seen_line = True
            _, problem = decode_line(line, self._decoder)
            if problem is not None:
                self._first = problem
        if self._first is None and self._splitter.too_long:
            self._first = line_too_long(self._splitter.too_long[0], self._splitter.max_line_bytes)

    def feed(self, chunk: bytes) -> None:
        if self._first is None:
            self._check(self._splitter.feed(chunk))

    def finish(self) -> Problem | None:
        if self._first is None:
            self._check(self._splitter.finish())
        if self._first is None and not self._seen_line:
            self._first = Problem(0, None, None, "empty_file", "The file is empty: it has no JSONL lines.")
        return self._first
