"""Validate a whole file on every core: byte ranges cut at line ends, one process each, merged.

Used by `ftapi validate` and (later) jobs; the upload path streams and stays sequential. The merged
report equals the sequential one: line numbers are known before the ranges start, example numbers
(which skip blank lines) are shifted afterwards, duplicates are counted over the union of hashes.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from trainer.data.formats import detect_format
from trainer.data.lines import JsonTooDeep, decode_json
from trainer.data.problems import Problem
from trainer.data.validate import RangeResult, StreamingValidator, ValidationReport

MIN_PARALLEL_BYTES = 8 * 1024 * 1024
_CHUNK = 1 << 20
_EXAMPLE = re.compile(r", example (\d+)")
_decoder: msgspec.json.Decoder[object] = msgspec.json.Decoder()


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int
    first_line: int


def split_ranges(path: Path, parts: int) -> list[ByteRange]:
    """`parts` ranges of about equal size, each starting at a line start, with its first line number."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as f:
        for k in range(1, parts):
            f.seek(max(size * k // parts, cuts[-1]))
            f.readline()  # to the end of the line we landed in
            cuts.append(min(f.tell(), size))
        cuts.append(size)
        ranges, line = [], 1
        for start, end in itertools.pairwise(cuts):
            if end > start:
                ranges.append(ByteRange(start, end, line))
            f.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = f.read(min(_CHUNK, remaining))
                remaining -= len(chunk)
                line += chunk.count(b"\n")
    return ranges


def _first_format(path: Path, max_line_bytes: int) -> str | None:
    with open(path, "rb") as f:
        for raw in f:
            if len(raw) > max_line_bytes:
                return None
            if raw.strip():
                try:
                    obj = decode_json(raw, _decoder)
                except (msgspec.DecodeError, UnicodeDecodeError, JsonTooDeep):
                    return None
                return detect_format(obj) if isinstance(obj, dict) else None
    return None


def _validate_range(path: Path, rng: ByteRange, fmt: str, kwargs: dict[str, Any]) -> RangeResult:
    validator = StreamingValidator(first_line=rng.first_line, initial_format=fmt, **kwargs)  # type: ignore[arg-type]
    with open(path, "rb") as f:
        f.seek(rng.start)
        remaining = rng.end - rng.start
        while remaining > 0:
            chunk = f.read(min(_CHUNK, remaining))
            remaining -= len(chunk)
            validator.feed(chunk)
    return validator.finish_range()


def _shift(problem: Problem, examples_before: int) -> Problem:
    if problem.example is None or examples_before == 0:
        return problem
    example = problem.example + examples_before
    message = _EXAMPLE.sub(f", example {example}", problem.message, count=1)
    return Problem(problem.line, example, problem.message_index, problem.code, message)


def validate_file_parallel(
    path: str | Path, *, workers: int | None = None, **kwargs: Any
) -> ValidationReport:
    """Like validate_file, on `workers` processes (default: every core). Small files run in-process."""
    path = Path(path)
    workers = workers or os.cpu_count() or 1
    fmt = kwargs.get("expected_format") or _first_format(path, kwargs.get("max_line_bytes", 16 << 20))
    if workers < 2 or fmt is None or path.stat().st_size < MIN_PARALLEL_BYTES:
        from trainer.data.validate import validate_file

        return validate_file(path, **kwargs)
    ranges = split_ranges(path, workers)
    # fork: the workers need nothing but this module; the CLI calling this is single-threaded.
    with ProcessPoolExecutor(len(ranges), mp_context=multiprocessing.get_context("fork")) as pool:
        results = list(
            pool.map(
                _validate_range, [path] * len(ranges), ranges, [fmt] * len(ranges), [kwargs] * len(ranges)
            )
        )
    merged = StreamingValidator(**kwargs)
    stats = merged.stats
    stats.format = results[0].stats.format
    hashed = 0
    union: set[int] = set()
    counts: Counter[str] = Counter()
    for result in results:
        for problem in result.problems:
            if len(merged._problems) < merged.max_problems:
                merged._problems.append(_shift(problem, stats.n_examples))
        counts.update(result.counts)
        part = result.stats
        stats.n_examples += part.n_examples
        stats.n_blank_lines += part.n_blank_lines
        stats.n_empty_assistant += part.n_empty_assistant
        stats.n_without_system += part.n_without_system
        stats.n_without_user += part.n_without_user
        hashed += part.n_duplicates + len(result.hashes)
        union |= result.hashes
        merged._lengths.values.extend(result.lengths.values)
    stats.n_duplicates = hashed - len(union)
    merged._counts = counts
    return merged.conclude()
