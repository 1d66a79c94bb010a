"""The validator and the trainer read training data the same way, on the hostile corpus.

For every file the upload check accepts, the trainer's own reading (trainer.data.lines.read_records,
and trainer.data.formats.read_examples,
then the rows `Dataset.from_list` gets and the chat template of the tiny model) must succeed and see
the same examples; every file it refuses names the line. No model is trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api.errors import InvalidRequest
from api.files.content_check import ContentCheck
from tests.support.data import chat_jsonl
from tests.support.hostile import CORPUS, Case, image_part_line
from trainer.data.formats import read_examples
from trainer.data.lines import MAX_JSON_DEPTH, read_records
from trainer.data.validate import validate_file

MAX_LINE_BYTES = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    from trainer.tiny import build_tiny_chat

    return AutoTokenizer.from_pretrained(build_tiny_chat(tmp_path_factory.mktemp("tiny")))


def upload_verdict(case: Case) -> str | None:
    """What POST /v1/files decides for a fine-tune file: None, or the error message."""
    check = ContentCheck("fine-tune", "train.jsonl", MAX_LINE_BYTES)
    for start in range(0, len(case.data), 4096):  # in pieces, as a request streams in
        check.feed(case.data[start : start + 4096])
    try:
        check.verdict("fine-tune")
    except InvalidRequest as err:
        return err.message
    return None


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_trainer_reads_whatever_the_validator_accepts(case: Case, tmp_path: Path, tokenizer: Any) -> None:
    from datasets import Dataset

    from trainer.run import training_rows
    from trainer.sft_rows import ChatEncoder

    path = tmp_path / "train.jsonl"
    path.write_bytes(case.data)
    verdict = upload_verdict(case)
    job_report = validate_file(path, count_tokens=False, chunk_size=1000)  # the job's validation
    if not case.accepted:
        assert verdict is not None and f"Line {case.bad_line}" in verdict
        assert not job_report.ok and job_report.first_problem is not None
        assert job_report.first_problem.line == case.bad_line
        return
    assert verdict is None and job_report.ok, (verdict, job_report.problems)
    assert len(read_records(path)) == job_report.stats.n_examples == case.examples
    rows = read_examples(path)
    dataset = Dataset.from_list(training_rows(rows, "supervised", ChatEncoder(tokenizer, 512)))
    assert len(dataset) == case.examples
    for row in dataset:
        assert row["input_ids"] and 1 in row["assistant_masks"]


def test_bare_cr_whitespace_is_not_a_line_end(tmp_path: Path) -> None:
    (case,) = [c for c in CORPUS if c.name == "bare_cr_whitespace"]
    path = tmp_path / "train.jsonl"
    path.write_bytes(case.data)
    assert b"\r" in case.data and all("messages" in r for r in read_records(path))
    # Text-mode reading (what the trainer did before) splits each record at its CRs.
    with open(path) as f:
        assert len([line for line in f if line.strip()]) > case.examples


@pytest.mark.parametrize("depth", [63, 64, 65, 300])
@pytest.mark.parametrize("position", ["first", "after_clean_block"])
def test_depth_limit_is_the_same_on_the_fast_and_the_slow_path(
    depth: int, position: str, tmp_path: Path
) -> None:
    """The first line goes the slow path; later lines the typed fast path (whose free-form
    image_url would hide a deep value); both must draw the line at MAX_JSON_DEPTH exactly."""
    # line 1 > messages 2 > message 3 > content 4 > part 5 > image_url: depth - 5 nested arrays
    deep = image_part_line(b"[" * (depth - 5) + b"]" * (depth - 5))
    before = [] if position == "first" else [line.rstrip(b"\n") for line in chat_jsonl(30).splitlines()]
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join([*before, deep, *before[:5]]) + b"\n")
    report = validate_file(path, count_tokens=False)
    if depth <= MAX_JSON_DEPTH:
        assert report.ok, report.problems
    else:
        assert report.first_problem is not None and report.first_problem.code == "json_too_deep"
        assert report.first_problem.line == len(before) + 1


@pytest.mark.slow
def test_a_real_run_trains_on_every_accepted_corpus_file(tmp_path: Path) -> None:
    """`python -m trainer run` (one epoch) on all accepted corpus files in one: bare-CR whitespace
    made it exit 1 after passing validation."""
    import json

    from tests.support.trainer_cli import run_trainer
    from trainer.spec import Hyperparameters

    data = b"".join(c.data if c.data.endswith(b"\n") else c.data + b"\n" for c in CORPUS if c.accepted)
    n_examples = sum(c.examples for c in CORPUS if c.accepted)
    (tmp_path / "train.jsonl").write_bytes(data)
    report = validate_file(tmp_path / "train.jsonl", count_tokens=False, expected_format="chat")
    assert report.ok and report.stats.n_examples == n_examples, report.problems
    hyperparameters = Hyperparameters(n_epochs=1, batch_size=8, learning_rate=5e-3)
    done = run_trainer(tmp_path, data, hyperparameters, job_id="ftjob-hostile", logging_steps=5).done
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["steps"] == -(-n_examples // 8) and summary["trained_tokens"] > 0
