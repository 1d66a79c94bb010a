"""Job states, which moves are allowed, and the event texts OpenAI uses for them."""

from __future__ import annotations

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
CANCELLABLE = frozenset({"validating_files", "queued", "running", "paused"})


def created(job_id: str) -> str:
    return f"Created fine-tuning job: {job_id}"


def validating(training_file: str, validation_file: str | None) -> str:
    if validation_file:
        return f"Validating training file: {training_file} and validation file: {validation_file}"
    return f"Validating training file: {training_file}"


FILES_VALIDATED = "Files validated, moving job to queued state"
CANCELLED = "Fine-tuning job cancelled"
PAUSED = "Fine-tuning job paused"
RESUMED = "Fine-tuning job resumed"


def invalid_file_message(detail: str) -> str:
    return f"The job failed due to an invalid training file. Invalid file format. {detail}"
