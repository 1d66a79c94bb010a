"""Waiting on fine-tuning jobs through the SDK, as a user's script would: poll, with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable

import openai
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

CHECKPOINT_EVENT = "Checkpoint created at step "


def wait_for_status(
    client: openai.OpenAI, job_id: str, statuses: set[str], timeout: float = 30
) -> FineTuningJob:
    """The job once its status is one of `statuses`, or as it is when the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def events_oldest_first(client: openai.OpenAI, job_id: str) -> list[FineTuningJobEvent]:
    return list(reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=100))))


def wait_for_event(
    client: openai.OpenAI,
    job_id: str,
    matches: Callable[[str], bool],
    *,
    after: str | None = None,
    timeout: float = 120,
) -> str:
    """The newest event message that `matches`, counting only events from the one whose message is
    `after` on (when given); fails the test if none comes in time."""
    deadline = time.monotonic() + timeout
    while True:
        messages = [e.message for e in events_oldest_first(client, job_id)]
        if after is not None:
            messages = messages[messages.index(after) :] if after in messages else []
        found = [m for m in messages if matches(m)]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no matching event for {job_id} (after {after!r})"
        time.sleep(0.3)


def is_checkpoint(message: str) -> bool:
    return message.startswith(CHECKPOINT_EVENT)
