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
from tests.support.jobs import (
    events_oldest_first,
    finishes_from,
    is_checkpoint,
    lenient,
    pause_when_saved,
    right_answers,
    wait_for_event,
    wait_for_status,
)
from tests.support.sentiment import preference_rows, sentiment_sets, to_jsonl
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


def result_csv(client: openai.OpenAI, file_id: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(client.files.content(file_id).text)))


def upload(client: openai.OpenAI, rows: list[dict[str, object]], name: str = "data.jsonl") -> str:
    return client.files.create(file=(name, to_jsonl(rows)), purpose="fine-tune").id


def test_lora_job_trains_and_succeeds(client: openai.OpenAI, server: RunningServer, project: Project) -> None:
    train, test = sentiment_sets()
    fid = upload(client, train, "sentiment.jsonl")
    # Two training examples leak into the validation file: the job must say so.
    vid = upload(client, test + train[:2], "held-out.jsonl")
    job = client.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=fid,
        validation_file=vid,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 40}}},
        suffix="sentiment",
    )
    done = wait_for_status(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=300)
    assert done.status == "succeeded", (
        done.error,
        (server.data_dir / "runs" / job.id / "trainer.log").read_text()[-3000:],
    )
    assert done.finished_at is not None and done.trained_tokens and done.trained_tokens > 0
    assert re.fullmatch(r"ft:tiny-chat:[^:]+:sentiment:[A-Za-z0-9]{8}", done.fine_tuned_model or "")
    assert done.hyperparameters.n_epochs == 40 and done.hyperparameters.batch_size == 6

    metrics_id, evaluation_id = done.result_files
    result = client.files.retrieve(metrics_id)
    assert (result.purpose, result.filename) == ("fine-tune-results", "step_metrics.csv")
    rows = result_csv(client, metrics_id)
    assert rows[0][:5] == ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
    assert rows[0][5:] == ["full_valid_loss", "full_valid_mean_token_accuracy"]
    assert [int(r[0]) for r in rows[1:]] == list(range(10, 401, 10))  # 40 epochs x 10 steps of 6
    assert all(r[3] and r[5] for r in rows[1:])  # every logged step here ends an epoch

    # Base vs tuned on the validation file, in an event and in the second result file.
    assert client.files.retrieve(evaluation_id).filename == "evaluation.csv"
    header, base, tuned = result_csv(client, evaluation_id)
    assert header == ["model", "examples", "loss", "mean_token_accuracy", "exact_match"]
    assert (base[0], tuned[0], base[1], tuned[1]) == ("tiny-chat", done.fine_tuned_model, "17", "17")
    assert float(base[4]) == 0 and float(tuned[4]) >= 0.9 and float(tuned[2]) < float(base[2])

    events = events_oldest_first(client, job.id)
    messages = [e.message for e in events]
    assert messages[:3] == [
        f"Created fine-tuning job: {job.id}",
        f"Validating training file: {fid} and validation file: {vid}",
        "Files validated, moving job to queued state",
    ]
    assert messages[3] == "Fine-tuning job started"
    [overlap] = [e for e in events if e.level == "warn"]
    assert overlap.data == {"overlapping_examples": 2, "validation_examples": 17}
    assert any(m.startswith("Evaluation on 17 validation examples: base model loss=") for m in messages)
    assert any(
        m.startswith("Step 400/400: training loss=") and "validation loss=" in m and "full validation" in m
        for m in messages
    )
    assert messages[-2:] == [
        f"New fine-tuned model created: {done.fine_tuned_model}",
        "The job has successfully completed",
    ]
    metrics = [e for e in events if e.type == "metrics"]
    assert {
        "step",
        "total_steps",
        "train_loss",
        "train_mean_token_accuracy",
        "valid_loss",
        "full_valid_loss",
    } <= set(metrics[-1].data or {})

    # One checkpoint per epoch was made; the last three are kept, the final one is the model.
    created = [m for m in messages if m.startswith("Checkpoint created at step ")]
    assert len(created) == 40
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id)
    assert [c.step_number for c in checkpoints.data] == [400, 390, 380] and not checkpoints.has_more
    assert checkpoints.data[0].fine_tuned_model_checkpoint == done.fine_tuned_model
    stem = (done.fine_tuned_model or "").rsplit(":", 1)[0]  # ft:base:project:suffix, then its own id8
    assert checkpoints.data[1].fine_tuned_model_checkpoint.startswith(stem + ":")
    assert checkpoints.data[1].fine_tuned_model_checkpoint.endswith(":ckpt-step-390")
    assert checkpoints.data[0].id.startswith("ftckpt_") and checkpoints.data[0].metrics.full_valid_loss
    page = client.fine_tuning.jobs.checkpoints.list(job.id, limit=1, after=checkpoints.data[0].id)
    assert [c.step_number for c in page.data] == [390] and page.has_more

    if server.env.get("FTAPI_STORAGE_BACKEND") != "s3":
        # Held-out prompts, base vs tuned, measured here independently of the job's own report.
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        base_dir = server.data_dir / "models" / "tiny-chat-v1"
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        base_model = AutoModelForCausalLM.from_pretrained(base_dir)
        assert exact_match(base_model, tokenizer, test) == 0
        job_dir = Path(server.data_dir / "blobs" / "jobs" / project.id / job.id)
        assert exact_match(PeftModel.from_pretrained(base_model, job_dir / "model"), tokenizer, test) >= 14
        kept = sorted(p.name for p in (job_dir / "checkpoints").iterdir())
        assert kept == ["step-380", "step-390", "step-400"]  # older checkpoints' files are deleted


def test_full_fine_tuning_job(client: openai.OpenAI, server: RunningServer, project: Project) -> None:
    train, test = sentiment_sets()
    job = client.fine_tuning.jobs.create(
        model="tiny-chat-full",
        training_file=upload(client, train),
        validation_file=upload(client, test),
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 10}}},
    )
    done = wait_for_status(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=300)
    assert done.status == "succeeded", done.error
    _, base, tuned = result_csv(client, done.result_files[1])
    assert float(base[4]) == 0 and float(tuned[4]) >= 0.9
    assert float(tuned[2]) < 0.5 < float(base[2])  # full fine-tuning drives the loss right down
    # The whole tuned model is served (by the in-process engine) under the job's model name.
    assert right_answers(client, done.fine_tuned_model or "") >= 13
    if server.env.get("FTAPI_STORAGE_BACKEND") != "s3":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_dir = server.data_dir / "blobs" / "jobs" / project.id / job.id / "model"
        assert (model_dir / "model.safetensors").exists() and not (model_dir / "adapter_config.json").exists()
        tuned_model = AutoModelForCausalLM.from_pretrained(model_dir)
        assert exact_match(tuned_model, AutoTokenizer.from_pretrained(model_dir), test) >= 14


def test_dpo_job(client: openai.OpenAI) -> None:
    train, test = sentiment_sets()
    job = client.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=upload(client, preference_rows(train)),
        validation_file=upload(client, preference_rows(test)),
        method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 10, "beta": 0.1}}},
    )
    done = wait_for_status(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=300)
    assert done.status == "succeeded", done.error
    assert done.method and done.method.type == "dpo" and done.method.dpo
    assert done.method.dpo.hyperparameters.beta == 0.1
    events = events_oldest_first(client, job.id)
    metrics = [e.data or {} for e in events if e.type == "metrics"]
    assert metrics[-1]["step"] == metrics[-1]["total_steps"] == 100
    # DPO's reward accuracy (preferred scored over rejected): the preference is learnt.
    assert metrics[0]["train_reward_accuracy"] < 0.8 <= metrics[-1]["train_reward_accuracy"]
    _, base, tuned = result_csv(client, done.result_files[1])
    assert float(tuned[2]) < float(base[2])  # the preferred answers became likelier


def test_cancel_stops_a_running_trainer(client: openai.OpenAI) -> None:
    train, _ = sentiment_sets()
    fid = client.files.create(file=("sentiment.jsonl", to_jsonl(train)), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=fid,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 50}}},
    )
    running = wait_for_status(client, job.id, {"running", "failed"}, timeout=60)
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


def test_pause_saves_a_checkpoint_and_resume_continues_from_it(client: openai.OpenAI) -> None:
    train, _ = sentiment_sets()
    job = client.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=upload(client, train),
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 50}}},
    )
    wait_for_event(client, job.id, is_checkpoint)
    step = pause_when_saved(client, job.id)
    time.sleep(2)
    assert lenient(client).fine_tuning.jobs.retrieve(job.id).status == "paused"  # stays paused
    assert lenient(client).fine_tuning.jobs.resume(job.id).status in ("queued", "running")
    done = finishes_from(client, job.id, step, last_step=500)
    rows = result_csv(client, done.result_files[0])
    assert int(rows[-1][0]) == 500
