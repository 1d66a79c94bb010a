"""Fine-tuning jobs through the SDK, as a user's script would: create, poll with a deadline, chat."""

from __future__ import annotations

import time
from collections.abc import Callable

import openai
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

from tests.support.sentiment import held_out_prompts, sentiment_sets, to_jsonl

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
        assert time.monotonic() < deadline, (
            f"no matching event for {job_id} (after {after!r}); the last events: {messages[-8:]}"
        )
        time.sleep(0.3)


def is_checkpoint(message: str) -> bool:
    return message.startswith(CHECKPOINT_EVENT)


def tune_sentiment(
    client: openai.OpenAI, suffix: str, timeout: float = 600, model: str = "tiny-chat", n_epochs: int = 40
) -> FineTuningJob:
    """A succeeded LoRA job of tiny-chat (or another catalogue model) on the sentiment task (40
    epochs: it answers held-out prompts right), created and awaited through the SDK."""
    train, _ = sentiment_sets()
    fid = client.files.create(file=("train.jsonl", to_jsonl(train)), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(
        model=model,
        training_file=fid,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": n_epochs}}},
        suffix=suffix,
    )
    done = wait_for_status(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=timeout)
    assert done.status == "succeeded" and done.fine_tuned_model, done.error
    return done


def right_answers(client: openai.OpenAI, model: str) -> int:
    """How many held-out sentiment prompts `model` answers exactly (greedy), through chat."""
    right = 0
    for messages, expected in held_out_prompts():
        done = client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            temperature=0,
            max_completion_tokens=12,
        )
        assert done.model == model
        right += (done.choices[0].message.content or "").strip() == expected
    return right


def lenient(client: openai.OpenAI) -> openai.OpenAI:
    """A client that parses `status: "paused"`: it is on the wire but not in the SDK's status enum,
    so strict parsing rejects it, as it would at OpenAI."""
    return openai.OpenAI(base_url=str(client.base_url), api_key=client.api_key)


def pause_when_saved(client: openai.OpenAI, job_id: str) -> int:
    """Pause a training job; returns the step of the checkpoint its trainer saved on the way out
    (newer than the pause request), which is then the job's newest."""
    assert lenient(client).fine_tuning.jobs.pause(job_id).status == "paused"
    saved = wait_for_event(client, job_id, is_checkpoint, after="Fine-tuning job paused", timeout=60)
    step = int(saved.split()[4])
    newest = client.fine_tuning.jobs.checkpoints.list(job_id, limit=1).data[0]
    assert newest.step_number == step and newest.fine_tuned_model_checkpoint.endswith(f":ckpt-step-{step}")
    return step


def finishes_from(client: openai.OpenAI, job_id: str, step: int, last_step: int) -> FineTuningJob:
    """A job resumed after a pause at `step` succeeds, continuing from that checkpoint to
    `last_step` (not restarting), with one "started" event in all."""
    done = wait_for_status(client, job_id, {"succeeded", "failed", "cancelled"}, timeout=300)
    assert done.status == "succeeded", done.error
    messages = [e.message for e in events_oldest_first(client, job_id)]
    expected = f"Fine-tuning job resumed from the checkpoint at step {step}"
    assert expected in messages, [m for m in messages if not m.startswith("Step ")]
    resumed = messages.index(expected)
    steps_after = [int(m.split()[1].split("/")[0]) for m in messages[resumed:] if m.startswith("Step ")]
    assert steps_after and min(steps_after) > step and max(steps_after) == last_step
    assert messages.count("Fine-tuning job started") == 1
    return done
