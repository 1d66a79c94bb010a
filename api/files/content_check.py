"""What a file's bytes must satisfy for its purpose, checked while they stream in.

fine-tune: `.jsonl` whose every line is a JSON object and whose examples pass the training-data
validator (chat or preference format), so a bad file is refused at upload with its line number
instead of failing a job later. batch: JSONL objects. Other purposes: no content check.
"""

from __future__ import annotations

from api.errors import InvalidRequest
from trainer.data.validate import JsonlLineChecker, StreamingValidator

JSONL_PURPOSES = ("fine-tune", "batch")


def check_extension(purpose: str, filename: str) -> None:
    if purpose == "fine-tune" and not filename.lower().endswith(".jsonl"):
        raise InvalidRequest("Invalid file format for Fine-Tuning API. Must be .jsonl", param="file")
    if purpose == "batch" and not filename.lower().endswith(".jsonl"):
        raise InvalidRequest("Invalid file format for Batch API. Must be .jsonl", param="file")


class ContentCheck:
    """Feed it every chunk; `verdict(purpose)` raises InvalidRequest naming the first bad line.

    When the purpose is not known before the bytes arrive (a client may send the `purpose`
    field after the file), the stricter fine-tune check runs and the verdict is taken at the end.
    """

    def __init__(self, purpose: str | None, filename: str, max_line_bytes: int) -> None:
        wants_format = purpose == "fine-tune" or (purpose is None and filename.lower().endswith(".jsonl"))
        wants_lines = purpose == "batch" or (purpose is None and filename.lower().endswith(".jsonl"))
        self._lines = JsonlLineChecker(max_line_bytes=max_line_bytes) if wants_lines else None
        self._format = (
            StreamingValidator(count_tokens=False, max_problems=1, max_line_bytes=max_line_bytes)
            if wants_format
            else None
        )

    def feed(self, chunk: bytes) -> None:
        if self._lines is not None:
            self._lines.feed(chunk)
        if self._format is not None:
            self._format.feed(chunk)

    def verdict(self, purpose: str) -> None:
        if purpose not in JSONL_PURPOSES:
            return
        if purpose == "batch" and self._lines is not None:
            problem = self._lines.finish()
            if problem is not None:
                raise InvalidRequest(problem.message, param="file", code="invalid_file_format")
            return
        if self._format is None:
            # Unreachable while the purpose cannot change after the file (multipart refuses a
            # second `purpose`); refuse rather than store a fine-tune file nobody validated.
            raise RuntimeError("a fine-tune file's content was not validated")
        report = self._format.finish()
        if report.first_problem is not None:
            raise InvalidRequest(report.first_problem.message, param="file", code="invalid_file_format")
