"""Base models from ftapi's own storage, on S3 (moto's server): `ftapi models import` uploads a local
Hugging Face folder, a running server offers it, a job trains from it and its tuned model answers
chat, and the folder is fetched from storage once for every job and the engine on this machine."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import ADMIN_KEY, s3_env
from tests.support.jobs import tune_sentiment
from tests.support.sentiment import held_out_prompts
from tests.support.server import run_server
from trainer.tiny import build_tiny_chat

pytestmark = [pytest.mark.slow, pytest.mark.s3]
FETCHED = "fetched the base model storage:base-models/acme--tiny-import/"


def ftapi(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def trainer_log(data_dir: Path, job_id: str) -> str:
    return (data_dir / "runs" / job_id / "trainer.log").read_text(errors="replace")


def test_a_model_imported_into_s3_trains_and_chats_fetched_once(moto_endpoint: str, tmp_path: Path) -> None:
    folder = build_tiny_chat(tmp_path / "built")  # stands for a Hugging Face folder copied in by hand
    env = {
        **s3_env(moto_endpoint, "ftapi-" + secrets.token_hex(4)),
        "FTAPI_DATA_DIR": str(tmp_path / "data"),
        "FTAPI_API_KEY": ADMIN_KEY,
        "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.2",
        "FTAPI_CATALOGUE_REFRESH_SECONDS": "0.5",
    }
    refused = ftapi(env, "models", "import", str(folder), "--name", "tiny-chat")
    assert refused.returncode == 1 and "already offers a model named tiny-chat" in refused.stderr

    with run_server(tmp_path / "data", env) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=ADMIN_KEY, _strict_response_validation=True)
        assert [m.id for m in client.models.list()] == ["tiny-chat"]
        args = ["models", "import", str(folder), "--name", "acme/tiny-import", "--base-learning-rate", "5e-3"]
        imported = ftapi(env, *args)
        assert imported.returncode == 0, imported.stderr
        entry = json.loads(imported.stdout)
        assert entry["source"] == "storage:base-models/acme--tiny-import/" and entry["max_length"] == 512
        again = ftapi(env, *args)
        assert again.returncode == 1 and "already in storage" in again.stderr

        deadline = time.monotonic() + 60  # the running server reads the import on its next refresh
        while "acme/tiny-import" not in (ids := [m.id for m in client.models.list()]):
            assert time.monotonic() < deadline, ids
            time.sleep(0.2)
        assert ids == ["tiny-chat", "acme/tiny-import"]
        assert client.models.retrieve("acme/tiny-import").owned_by == "system"

        # Short runs: the machine is shared; what is tested is where the weights come from.
        first = tune_sentiment(client, "stored", model="acme/tiny-import", n_epochs=2)
        assert first.model == "acme/tiny-import" and first.fine_tuned_model
        assert first.fine_tuned_model.startswith("ft:acme/tiny-import:")
        messages, _ = held_out_prompts()[0]
        reply = client.chat.completions.create(
            model=first.fine_tuned_model,
            messages=messages,  # type: ignore[arg-type]
            temperature=0,
            max_completion_tokens=8,
        )
        assert reply.model == first.fine_tuned_model and reply.choices[0].message.content
        assert FETCHED in trainer_log(srv.data_dir, first.id)

        second = tune_sentiment(client, "again", model="acme/tiny-import", n_epochs=1)
        assert FETCHED not in trainer_log(srv.data_dir, second.id)
        # One copy on this machine, shared by trainers and the engine, which found it there.
        copies = [p for p in (srv.data_dir / "models" / "storage").iterdir() if not p.name.startswith(".")]
        assert len(copies) == 1 and (copies[0] / "model.safetensors").exists()
        assert '"base_model.fetched"' not in srv.log_text()
