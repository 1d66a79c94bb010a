"""Real model families end to end, offline: a small random-init model of each architecture with its
family's real chat template (tests/support/families.py) is fine-tuned through the strict SDK on a
real `ftapi serve`, and the tuned model, served by the transformers engine, ends its answer at the
family's end-of-turn token (finish_reason "stop"), not at max_tokens.

One server for the module; each job trains 20 steps only.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import openai
import pytest

from tests.conftest import ADMIN_KEY
from tests.support.families import (
    ANSWER,
    FAMILIES,
    family_entries,
    family_rows,
    jsonl,
    trl_template,
    tune_family,
)
from tests.support.jobs import wait_for_status
from tests.support.server import RunningServer, run_server

pytestmark = pytest.mark.slow

# Gemma 2's soft-capped logits move slower: 20 steps at 5e-3 learned "ok" but not to stop after it.
LR_MULTIPLIER = {"gemma2": 4.0}


@pytest.fixture(scope="module")
def families_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("family-models")
    # Full fine-tuning: a random-init model learns to end its turn in a few steps.
    entries = family_entries(root, "full")
    # Qwen3's template rewrites earlier assistant turns: not trainable with an assistant mask.
    qwen3 = root / "qwen3-template"
    shutil.copytree(root / "qwen2", qwen3)
    config = json.loads((qwen3 / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (qwen3 / "tokenizer_config.json").write_text(json.dumps(config))
    (qwen3 / "chat_template.jinja").write_text(trl_template("qwen3"))
    entries.append({**entries[0], "id": "fam-qwen3-template", "source": str(qwen3)})
    entries.append(
        {**entries[0], "id": "fam-qwen2-qlora", "mode": "lora", "training": {"quantization": "4bit"}}
    )
    models = root / "models.json"
    models.write_text(json.dumps(entries))
    env = {
        "FTAPI_API_KEY": ADMIN_KEY,
        "FTAPI_MODELS_FILE": str(models),
        "FTAPI_MAX_CONCURRENT_JOBS": "1",
        "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.2",
    }
    # A loaded machine starts a server slowly; the default 60 s was seen to run out here.
    with run_server(tmp_path_factory.mktemp("families-server"), env, ready_timeout=240) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(families_server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=families_server.base_url, api_key=ADMIN_KEY, _strict_response_validation=True
    )


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_trains_and_its_tuned_model_stops_at_end_of_turn(name: str, client: openai.OpenAI) -> None:
    # 20 steps in 4 epochs: a checkpoint (the whole model) is saved per epoch.
    tuned = tune_family(
        client, name, n_epochs=4, batch_size=12, learning_rate_multiplier=LR_MULTIPLIER.get(name, 1.0)
    )
    reply = client.chat.completions.create(
        model=tuned,
        messages=[{"role": "user", "content": "the product is good"}],
        max_completion_tokens=24,
        temperature=0,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "stop", (name, choice.message.content)
    assert choice.message.content == ANSWER
    assert reply.usage is not None and reply.usage.completion_tokens <= 3  # the answer, then end-of-turn


def test_an_untrainable_template_is_refused_at_creation(client: openai.OpenAI) -> None:
    fid = client.files.create(file=("train.jsonl", jsonl(family_rows(12, True))), purpose="fine-tune").id
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model="fam-qwen3-template", training_file=fid)
    assert err.value.param == "model"
    assert err.value.code == "model_not_available"
    assert "not prefix-consistent" in err.value.message
    assert client.models.retrieve("fam-qwen3-template").id == "fam-qwen3-template"  # still listed


def test_system_messages_for_a_template_that_refuses_them_fail_validation(client: openai.OpenAI) -> None:
    """Gemma's template cannot render `system`: the job fails while validating its files, before any
    trainer starts, saying so."""
    fid = client.files.create(file=("train.jsonl", jsonl(family_rows(12, True))), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model="fam-gemma2", training_file=fid)
    done = wait_for_status(client, job.id, {"failed", "queued", "running", "succeeded"}, timeout=60)
    assert done.status == "failed"
    assert done.error is not None and done.error.code == "invalid_training_file"
    assert done.error.param == "training_file"
    assert "12 examples of the training file have a system message" in done.error.message


def test_qlora_is_refused_at_creation_without_a_gpu(client: openai.OpenAI) -> None:
    """This machine has no GPU: a catalogue model configured for QLoRA cannot train here."""
    fid = client.files.create(file=("train.jsonl", jsonl(family_rows(12, True))), purpose="fine-tune").id
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model="fam-qwen2-qlora", training_file=fid)
    assert err.value.param == "model"
    assert "QLoRA" in err.value.message and "needs a CUDA GPU" in err.value.message
