"""Split a byte stream into numbered JSONL lines without ever holding more than one line.

A line longer than the limit is reported and skipped without being buffered.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from trainer.data.problems import Problem

JSONL_HINT = "Expected file to have JSONL format, where every line is a valid JSON dictionary."


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
