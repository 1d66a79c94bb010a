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
from tests.support.hostile import CORPUS, Case
from trainer.data.formats import read_examples
from trainer.data.lines import read_records
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

    from trainer.evaluate import encode
    from trainer.run import training_rows

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
    dataset = Dataset.from_list(training_rows(rows, "supervised"))
    assert len(dataset) == case.examples
    for row in dataset:
        assert encode(tokenizer, row["messages"], 512).input_ids


def test_bare_cr_whitespace_is_not_a_line_end(tmp_path: Path) -> None:
    (case,) = [c for c in CORPUS if c.name == "bare_cr_whitespace"]
    path = tmp_path / "train.jsonl"
    path.write_bytes(case.data)
    assert b"\r" in case.data and all("messages" in r for r in read_records(path))
    # Text-mode reading (what the trainer did before) splits each record at its CRs.
    with open(path) as f:
        assert len([line for line in f if line.strip()]) > case.examples
