"""Validating a file on several processes gives exactly the sequential report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.data import chat_jsonl, dpo_jsonl
from trainer.data import parallel
from trainer.data.parallel import split_ranges, validate_file_parallel
from trainer.data.validate import validate_file


@pytest.fixture(autouse=True)
def small_files_go_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "d.jsonl"
    path.write_bytes(data)
    return path


def bad(line: object) -> bytes:
    return json.dumps(line).encode() + b"\n"


@pytest.mark.parametrize("workers", [2, 3, 7])
def test_parallel_report_equals_sequential(tmp_path: Path, workers: int) -> None:
    unknown_role = bad(
        {"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}
    )
    data = (
        chat_jsonl(30)
        + b"\n\n"  # blank lines shift example numbers against line numbers
        + unknown_role
        + chat_jsonl(30)  # duplicates of the first 30, across ranges
        + b"[1]\n"
        + dpo_jsonl(2)  # mixed formats
        + chat_jsonl(25)
        + unknown_role
    )
    path = write(tmp_path, data)
    sequential = validate_file(path, max_problems=50).to_dict()
    assert validate_file_parallel(path, workers=workers, max_problems=50).to_dict() == sequential
    assert sequential["stats"]["n_duplicates"] == 55


def test_limits_and_counts_match(tmp_path: Path) -> None:
    path = write(tmp_path, b"".join(bad([i]) for i in range(40)) + chat_jsonl(3))
    # A first line that is not an example: the file's format is unknown up front, so it runs in-process.
    assert (
        validate_file_parallel(path, workers=2, max_problems=5).to_dict()
        == validate_file(path, max_problems=5).to_dict()
    )
    path = write(tmp_path, chat_jsonl(5) + b"".join(bad([i]) for i in range(40)))
    report = validate_file_parallel(path, workers=3, max_problems=5, min_examples=100)
    assert report.to_dict() == validate_file(path, max_problems=5, min_examples=100).to_dict()
    assert report.problem_counts == {"not_a_dict": 40, "invalid_n_examples": 1}


def test_ranges_start_at_line_starts(tmp_path: Path) -> None:
    data = chat_jsonl(50)
    path = write(tmp_path, data)
    ranges = split_ranges(path, 4)
    assert ranges[0].start == 0 and ranges[-1].end == len(data)
    for r in ranges:
        assert r.start == 0 or data[r.start - 1 : r.start] == b"\n"
        assert r.first_line == data[: r.start].count(b"\n") + 1
