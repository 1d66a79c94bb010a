"""Jobs that really train: the SDK creates a job, the dispatcher runs the trainer, the job succeeds.

Slow (real training on the CPU), so it runs on two backend combinations, not all four.
"""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import Project, new_project
from tests.support.sentiment import sentiment_sets, to_jsonl
from tests.support.server import RunningServer
from tests.trainer.test_run import exact_match

pytestmark = pytest.mark.slow


@pytest.fixture
def project(training_server: RunningServer) -> Project:
    return new_project(training_server)


@pytest.fixture
def server(training_server: RunningServer) -> RunningServer:
    return training_server


@pytest.fixture
def client(training_server: RunningServer, project: Project) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=training_server.base_url, api_key=project.key, _strict_response_validation=True
    )


def wait_for(
    client: openai.OpenAI, job_id: str, statuses: set[str], timeout: float
) -> openai.types.fine_tuning.FineTuningJob:
    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses or time.monotonic() > deadline:
            return job
        time.sleep(0.5)


def test_lora_job_trains_and_succeeds(client: openai.OpenAI, server: RunningServer, project: Project) -> None:
    train, test = sentiment_sets()
    fid = client.files.create(file=("sentiment.jsonl", to_jsonl(train)), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=fid,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 40}}},
        suffix="sentiment",
    )
    done = wait_for(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=300)
    assert done.status == "succeeded", (
        done.error,
        (server.data_dir / "runs" / job.id / "trainer.log").read_text()[-3000:],
    )
    assert done.finished_at is not None and done.trained_tokens and done.trained_tokens > 0
    assert re.fullmatch(r"ft:tiny-chat:[^:]+:sentiment:[A-Za-z0-9]{8}", done.fine_tuned_model or "")
    assert done.hyperparameters.n_epochs == 40 and done.hyperparameters.batch_size == 6

    [result_id] = done.result_files
    result = client.files.retrieve(result_id)
    assert (result.purpose, result.filename) == ("fine-tune-results", "step_metrics.csv")
    rows = list(csv.reader(io.StringIO(client.files.content(result_id).text)))
    assert rows[0][:5] == ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
    assert int(rows[-1][0]) == 400  # 40 epochs x 10 steps (60 examples, batch 6)

    messages = [e.message for e in reversed(list(client.fine_tuning.jobs.list_events(job.id, limit=100)))]
    assert messages[:3] == [
        f"Created fine-tuning job: {job.id}",
        f"Validating training file: {fid}",
        "Files validated, moving job to queued state",
    ]
    assert messages[3] == "Fine-tuning job started"
    assert any(m.startswith("Step 400/400: training loss=") for m in messages)
    assert messages[-2:] == [
        f"New fine-tuned model created: {done.fine_tuned_model}",
        "The job has successfully completed",
    ]
    metrics = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    assert metrics and {"step", "total_steps", "train_loss", "train_mean_token_accuracy"} <= set(
        metrics[0].data or {}
    )

    if server.env.get("FTAPI_STORAGE_BACKEND") != "s3":
        # Held-out prompts, base vs tuned: the adapter the job stored has learned the task.
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        base_dir = server.data_dir / "models" / "tiny-chat-v1"
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        base = AutoModelForCausalLM.from_pretrained(base_dir)
        assert exact_match(base, tokenizer, test) == 0
        adapter = Path(server.data_dir / "blobs" / "jobs" / project.id / job.id / "model")
        assert exact_match(PeftModel.from_pretrained(base, adapter), tokenizer, test) >= 14


def test_cancel_stops_a_running_trainer(client: openai.OpenAI) -> None:
    train, _ = sentiment_sets()
    fid = client.files.create(file=("sentiment.jsonl", to_jsonl(train)), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=fid,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 50}}},
    )
    running = wait_for(client, job.id, {"running", "failed"}, timeout=60)
    assert running.status == "running"
    deadline = time.monotonic() + 120  # wait for training to really be under way
    while time.monotonic() < deadline and not any(
        e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id, limit=5)
    ):
        time.sleep(0.5)
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    time.sleep(3)
    after = client.fine_tuning.jobs.retrieve(job.id)
    assert (after.status, after.fine_tuned_model) == ("cancelled", None)
    assert client.fine_tuning.jobs.list_events(job.id, limit=1).data[0].message == "Fine-tuning job cancelled"
