"""Base models from ftapi's own storage, on S3 (moto's server): `ftapi models import` uploads a local
Hugging Face folder, a running server offers it, a job trains from it and its tuned model answers
chat, and the folder is fetched from storage once for every job and the engine on this machine.
An imported model whose chat template cannot be trained is refused at job creation, from the check
the import recorded, for catalogue-file entries naming the same folder too."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from api.catalogue import BaseModelEntry, Catalogue
from api.settings import Settings
from storage.factory import build_store
from tests.conftest import ADMIN_KEY, s3_env
from tests.support.families import trl_template
from tests.support.jobs import tune_sentiment
from tests.support.sentiment import held_out_prompts, sentiment_sets, to_jsonl
from tests.support.server import RunningServer, run_server
from trainer.tiny import build_tiny_chat

pytestmark = [pytest.mark.slow, pytest.mark.s3]
MODEL = "acme/tiny-import"
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


@dataclass(frozen=True)
class Imported:
    server: RunningServer
    client: openai.OpenAI
    env: dict[str, str]
    folder: Path  # the imported folder (tiny-chat as built)


def wait_listed(client: openai.OpenAI, model: str, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout  # the running server reads an import on its next refresh
    while model not in (ids := [m.id for m in client.models.list()]):
        assert time.monotonic() < deadline, ids
        time.sleep(0.2)
    return ids


@pytest.fixture(scope="module")
def imported(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    """A server on S3 that runs trainers, and tiny-chat's built folder imported while it runs."""
    tmp = tmp_path_factory.mktemp("stored-models")
    folder = build_tiny_chat(tmp / "built")  # stands for a Hugging Face folder copied in by hand
    env = {
        **s3_env(moto_endpoint, "ftapi-" + secrets.token_hex(4)),
        "FTAPI_DATA_DIR": str(tmp / "data"),
        "FTAPI_API_KEY": ADMIN_KEY,
        "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.2",
        "FTAPI_CATALOGUE_REFRESH_SECONDS": "0.5",
    }
    refused = ftapi(env, "models", "import", str(folder), "--name", "tiny-chat")
    assert refused.returncode == 1 and "already offers a model named tiny-chat" in refused.stderr

    with run_server(tmp / "data", env) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=ADMIN_KEY, _strict_response_validation=True)
        assert [m.id for m in client.models.list()] == ["tiny-chat"]
        args = ["models", "import", str(folder), "--name", MODEL, "--base-learning-rate", "5e-3"]
        done = ftapi(env, *args)
        assert done.returncode == 0, done.stderr
        entry = json.loads(done.stdout)
        assert entry["source"] == "storage:base-models/acme--tiny-import/" and entry["max_length"] == 512
        again = ftapi(env, *args)
        assert again.returncode == 1 and "already in storage" in again.stderr

        assert "not fine-tuned" not in done.stderr  # tiny-chat's template is trainable
        assert wait_listed(client, MODEL) == ["tiny-chat", MODEL]
        assert client.models.retrieve(MODEL).owned_by == "system"
        yield Imported(srv, client, env, folder)


def test_a_job_trains_from_the_imported_model_and_its_model_answers(imported: Imported) -> None:
    # A short run: the machine is shared; what is tested is where the weights come from.
    client = imported.client
    first = tune_sentiment(client, "stored", model=MODEL, n_epochs=1)
    assert first.model == MODEL and first.fine_tuned_model
    assert first.fine_tuned_model.startswith(f"ft:{MODEL}:")
    messages, _ = held_out_prompts()[0]
    reply = client.chat.completions.create(
        model=first.fine_tuned_model,
        messages=messages,  # type: ignore[arg-type]
        temperature=0,
        max_completion_tokens=8,
    )
    assert reply.model == first.fine_tuned_model and reply.choices[0].message.content
    assert FETCHED in trainer_log(imported.server.data_dir, first.id)


def test_a_second_job_does_not_fetch_it_again(imported: Imported) -> None:
    data_dir = imported.server.data_dir
    if not (data_dir / "runs").exists():  # run alone: the first job is this test's own
        tune_sentiment(imported.client, "first", model=MODEL, n_epochs=1)
    second = tune_sentiment(imported.client, "again", model=MODEL, n_epochs=1)
    assert FETCHED not in trainer_log(data_dir, second.id)
    logs = [p.read_text(errors="replace") for p in (data_dir / "runs").glob("*/trainer.log")]
    assert len(logs) >= 2 and sum(FETCHED in log for log in logs) == 1
    # One copy on this machine, shared by trainers and the engine, which found it there.
    copies = [p for p in (data_dir / "models" / "storage").iterdir() if not p.name.startswith(".")]
    assert len(copies) == 1 and (copies[0] / "model.safetensors").exists()
    assert '"base_model.fetched"' not in imported.server.log_text()


def test_an_untrainable_template_is_refused_at_creation_from_the_import_check(
    imported: Imported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The servers never hold a stored model's files before a job needs them: the template is checked
    by `ftapi models import`, where the folder is local, and the check travels in the manifest."""
    untrainable = "acme/qwen3-template"
    folder = shutil.copytree(imported.folder, tmp_path / "qwen3-template")
    # Qwen3's template rewrites earlier assistant turns: no assistant mask can be computed with it.
    (folder / "chat_template.jinja").write_text(trl_template("qwen3"))
    done = ftapi(imported.env, "models", "import", str(folder), "--name", untrainable)
    assert done.returncode == 0, done.stderr
    assert "can be served but not fine-tuned here" in done.stderr and "not prefix-consistent" in done.stderr

    client = imported.client
    wait_listed(client, untrainable)
    train, _ = sentiment_sets()
    fid = client.files.create(file=("train.jsonl", to_jsonl(train[:12])), purpose="fine-tune").id
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model=untrainable, training_file=fid)
    assert err.value.param == "model" and err.value.code == "model_not_available"
    assert f"Model {untrainable} cannot be fine-tuned here" in err.value.message
    assert "not prefix-consistent" in err.value.message

    # A catalogue-file entry naming a stored folder gets that folder's check.
    for key, value in imported.env.items():
        monkeypatch.setenv(key, value)
    source = "storage:base-models/acme--qwen3-template/"
    catalogue = Catalogue(
        [
            BaseModelEntry(id="by-file", source=source, base_learning_rate=1e-4),
            BaseModelEntry(
                id="by-file-ok", source="storage:base-models/acme--tiny-import/", base_learning_rate=1e-4
            ),
        ]
    )
    assert catalogue.template("by-file").problem is None  # nothing read from storage yet

    async def refresh() -> None:
        store = build_store(Settings().store_config)
        try:
            await catalogue.refresh(store)
        finally:
            await store.close()

    asyncio.run(refresh())
    problem = catalogue.template("by-file").problem
    assert problem is not None and "not prefix-consistent" in problem
    assert catalogue.template(untrainable).problem == problem
    assert catalogue.template("by-file-ok").problem is None
