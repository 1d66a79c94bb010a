"""POST /v1/fine_tuning/jobs/estimate (an ftapi extension) and `ftapi estimate`, without history:
on an API-only server no job ever finishes, so the duration is unknown. With history (a finished
job), and `estimated_finish` on a running job: tests/api/test_tuned_models.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.data import chat_jsonl
from tests.support.sentiment import sentiment_sets, to_jsonl
from tests.support.server import RunningServer

# Two backend combinations: the estimate reads a file from storage and the database's history.
pytestmark = pytest.mark.parametrize("server", ["local-sqlite", "s3-postgres"], indirect=True)


def estimate(client: openai.OpenAI, **body: Any) -> dict[str, Any]:
    result: dict[str, Any] = client.post("/fine_tuning/jobs/estimate", body=body, cast_to=object)
    return result


def test_an_estimate_resolves_auto_and_counts_tokens_without_creating_a_job(client: openai.OpenAI) -> None:
    fid = client.files.create(file=("s.jsonl", to_jsonl(sentiment_sets()[0])), purpose="fine-tune").id
    got = estimate(client, model="tiny-chat", training_file=fid)
    assert got["object"] == "fine_tuning.job.estimate" and got["model"] == got["base_model"] == "tiny-chat"
    assert got["n_examples"] == 60 and got["tokens_counted"] is True and got["tokens_per_epoch"] > 60 * 20
    # auto as the job would resolve it: 3 epochs, batch min(8, 60 // 10) = 6, multiplier 1.
    assert got["hyperparameters"] == {"n_epochs": 3, "batch_size": 6, "learning_rate_multiplier": 1.0}
    assert (got["steps_per_epoch"], got["total_steps"]) == (10, 30)
    assert got["trained_tokens"] == 3 * got["tokens_per_epoch"]
    assert got["estimated_duration_seconds"] is None and got["estimated_duration"] == "unknown"
    assert got["throughput"]["jobs"] == 0 and got["throughput"]["tokens_per_second"] is None

    chosen = estimate(
        client,
        model="tiny-chat",
        training_file=fid,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 7, "batch_size": 16}}},
    )
    assert (chosen["steps_per_epoch"], chosen["total_steps"]) == (4, 28)
    assert chosen["trained_tokens"] == 7 * got["tokens_per_epoch"]
    assert list(client.fine_tuning.jobs.list()) == []  # nothing was created


def test_an_estimate_checks_the_body_as_create_does(client: openai.OpenAI) -> None:
    small = client.files.create(file=("small.jsonl", chat_jsonl(3)), purpose="fine-tune").id
    with pytest.raises(openai.BadRequestError) as few:
        estimate(client, model="tiny-chat", training_file=small)
    assert (few.value.code, few.value.param) == ("invalid_n_examples", "training_file")
    with pytest.raises(openai.BadRequestError) as model:
        estimate(client, model="no-such-model", training_file=small)
    assert (model.value.code, model.value.param) == ("model_not_available", "model")
    with pytest.raises(openai.BadRequestError) as missing:
        estimate(client, model="tiny-chat", training_file="file-nope")
    assert missing.value.param == "training_file"


def test_the_cli_estimates_a_local_file(server: RunningServer, tmp_path: Path) -> None:
    if server.env.get("FTAPI_STORAGE_BACKEND") == "s3":
        pytest.skip("the CLI reads a local file and the database; once is enough")
    path = tmp_path / "train.jsonl"
    path.write_bytes(to_jsonl(sentiment_sets()[0]))
    env = {**os.environ, "FTAPI_DATA_DIR": str(server.data_dir), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "estimate", str(path), "--n-epochs", "2", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout)
    assert got["hyperparameters"]["n_epochs"] == 2 and got["total_steps"] == 20
    assert got["estimated_duration"] == "unknown"
    text = subprocess.run(
        [sys.executable, "-m", "api.cli", "estimate", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert text.returncode == 0 and "30 steps" in text.stdout and "estimated duration: unknown" in text.stdout
