"""The validator's report on a fine-tune file, as an ftapi extension of the Files API.

OpenAI answers a bad training file with its first problem only; the report lists every problem
(up to `MAX_PROBLEMS`, with counts by kind) and the data-quality statistics, so a person can fix a
file in one go. Served at `GET /v1/files/{file_id}/validation` (a stored file) and
`POST /v1/files/validation` (bytes checked and thrown away: a file the upload refused has no id).
Tokens are estimated (line bytes / 4): the API process loads no tokenizer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Literal

from pydantic import BaseModel, Field

from trainer.data.validate import StreamingValidator, ValidationReport

MAX_PROBLEMS = 100
# Validating is CPU work: feed the validator from a thread in blocks of about this size, so the
# event loop keeps serving other requests while a big file is checked.
_BLOCK_BYTES = 1024 * 1024

Method = Literal["supervised", "dpo"]
_FORMATS = {"supervised": "chat", "dpo": "preference"}


class ValidationProblem(BaseModel):
    line: int = Field(description="1-based line of the file.")
    example: int | None = Field(description="1-based example number (blank lines are not examples).")
    message_index: int | None = Field(description="1-based message within the example, when it is one.")
    code: str
    message: str


class DataQuality(BaseModel):
    n_examples: int
    n_blank_lines: int
    format: str | None = Field(description="chat or preference, as detected or as the method expects.")
    tokens_counted: bool = Field(description="False: token figures are estimated as line bytes / 4.")
    total_tokens: int
    min_tokens: int
    mean_tokens: float
    p50_tokens: int
    p95_tokens: int
    max_tokens: int
    max_tokens_limit: int | None = Field(description="The model's context length, when `model` was given.")
    n_over_limit: int
    n_duplicates: int
    n_empty_assistant: int
    n_without_system: int
    n_without_user: int


class FileValidationReport(BaseModel):
    object: Literal["file.validation_report"] = "file.validation_report"
    file_id: str | None = Field(description="The stored file; null for bytes validated without storing.")
    filename: str
    ok: bool
    problems: list[ValidationProblem] = Field(
        description=f"The first {MAX_PROBLEMS} problems, in file order."
    )
    problem_counts: dict[str, int] = Field(description="Every problem found, counted by code.")
    stats: DataQuality

    @classmethod
    def from_report(
        cls, report: ValidationReport, *, file_id: str | None, filename: str
    ) -> FileValidationReport:
        return cls(
            file_id=file_id,
            filename=filename,
            ok=report.ok,
            problems=[ValidationProblem.model_validate(p.to_dict()) for p in report.problems],
            problem_counts=dict(sorted(report.problem_counts.items())),
            stats=DataQuality.model_validate(report.stats.to_dict()),
        )


async def validate_stream(
    chunks: AsyncIterator[bytes], *, method: Method | None, max_tokens: int | None, max_line_bytes: int
) -> ValidationReport:
    """Run the shared streaming validator over `chunks`; only one block is held at a time."""
    validator = StreamingValidator(
        expected_format=_FORMATS[method] if method else None,  # type: ignore[arg-type]
        max_tokens=max_tokens,
        max_problems=MAX_PROBLEMS,
        count_tokens=True,  # without a tokenizer: estimated from line bytes
        max_line_bytes=max_line_bytes,
    )
    block: list[bytes] = []
    size = 0
    async for chunk in chunks:
        block.append(chunk)
        size += len(chunk)
        if size >= _BLOCK_BYTES:
            await asyncio.to_thread(validator.feed, b"".join(block))
            block, size = [], 0
    if block:
        await asyncio.to_thread(validator.feed, b"".join(block))
    return await asyncio.to_thread(validator.finish)
