"""/v1/models and /v1/chat/completions on the in-process transformers engine, through the SDK.

One LoRA job trains tiny-chat on the sentiment task per server; the tests then use its model the
way a user would. Slow (real training and generation on the CPU).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import openai
import pytest

from tests.conftest import Project, new_project
from tests.support.jobs import events_oldest_first, right_answers, tune_sentiment
from tests.support.sentiment import held_out_prompts
from tests.support.server import RunningServer, run_server

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Tuned:
    server: RunningServer
    project: Project
    client: openai.OpenAI
    job_id: str
    model: str
    checkpoint: str


def sdk(server: RunningServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, _strict_response_validation=True)


@pytest.fixture(scope="module")
def tuned(training_server: RunningServer) -> Iterator[Tuned]:
    project = new_project(training_server)
    client = sdk(training_server, project.key)
    done = tune_sentiment(client, "serve", timeout=2400)  # 400 steps: minutes on a busy machine
    checkpoints = client.fine_tuning.jobs.checkpoints.list(done.id).data
    earlier = [
        c.fine_tuned_model_checkpoint
        for c in checkpoints
        if c.fine_tuned_model_checkpoint != done.fine_tuned_model
    ]
    yield Tuned(training_server, project, client, done.id, done.fine_tuned_model or "", earlier[0])


def test_models_lists_base_and_tuned_models_of_the_project(tuned: Tuned) -> None:
    ids = [m.id for m in tuned.client.models.list()]
    assert ids[:2] == ["tiny-chat", "tiny-chat-full"] and tuned.model in ids
    assert tuned.checkpoint not in ids  # checkpoints resolve but are not listed, as at OpenAI
    model = tuned.client.models.retrieve(tuned.model)
    assert (model.id, model.object, model.owned_by) == (tuned.model, "model", "org-ftapi")
    assert tuned.client.models.retrieve(tuned.checkpoint).id == tuned.checkpoint
    assert tuned.client.models.retrieve("tiny-chat").owned_by == "system"

    stranger = sdk(tuned.server, new_project(tuned.server).key)
    assert tuned.model not in [m.id for m in stranger.models.list()]
    for call in (
        lambda: stranger.models.retrieve(tuned.model),
        lambda: stranger.chat.completions.create(
            model=tuned.model, messages=[{"role": "user", "content": "hi"}]
        ),
    ):
        with pytest.raises(openai.NotFoundError) as err:
            call()
        assert err.value.code == "model_not_found" and err.value.param == "model"


def test_chat_answers_with_the_tuned_behaviour(tuned: Tuned) -> None:
    assert right_answers(tuned.client, tuned.model) >= 13
    assert right_answers(tuned.client, "tiny-chat") <= 3
    messages, _ = held_out_prompts()[0]
    done = tuned.client.chat.completions.create(model=tuned.model, messages=messages, temperature=0)  # type: ignore[arg-type]
    assert done.model == tuned.model and done.object == "chat.completion"
    assert done.choices[0].finish_reason == "stop" and done.usage is not None
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    # An earlier checkpoint is a model too.
    early = tuned.client.chat.completions.create(model=tuned.checkpoint, messages=messages, temperature=0)  # type: ignore[arg-type]
    assert early.model == tuned.checkpoint


def test_streaming_gives_the_same_answer_in_chunks(tuned: Tuned) -> None:
    messages, expected = held_out_prompts()[1]
    stream = tuned.client.chat.completions.create(
        model=tuned.model,
        messages=messages,  # type: ignore[arg-type]
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert {c.model for c in chunks} == {tuned.model} and len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == expected
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert (
        chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 1
    )


def test_chat_errors_are_openai_envelopes(tuned: Tuned) -> None:
    client = tuned.client
    hi = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="ft:tiny-chat:nobody:x:abcdefgh", messages=hi)  # type: ignore[arg-type]
    assert missing.value.code == "model_not_found"
    # Names resolve against the catalogue and this project's jobs only, never against paths.
    for name in ("/etc", "../blobs", str(tuned.server.data_dir / "models" / "tiny-chat-v1")):
        with pytest.raises(openai.NotFoundError) as path:
            client.chat.completions.create(model=name, messages=hi)  # type: ignore[arg-type]
        assert path.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad_n:
        client.chat.completions.create(model=tuned.model, messages=hi, n=0)  # type: ignore[arg-type]
    assert bad_n.value.param == "n"
    with pytest.raises(openai.BadRequestError) as options:
        client.chat.completions.create(model=tuned.model, messages=hi, stream_options={"include_usage": True})  # type: ignore[arg-type]
    assert options.value.param == "stream_options"
    with pytest.raises(openai.BadRequestError) as empty:
        client.chat.completions.create(model=tuned.model, messages=[])
    assert empty.value.param == "messages"
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as tools:
        client.chat.completions.create(model=tuned.model, messages=hi, tools=[tool])  # type: ignore[arg-type, list-item]
    assert tools.value.param == "tools"  # the transformers engine says what it cannot do
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=tuned.server.base_url, api_key="sk-wrong").chat.completions.create(
            model=tuned.model,
            messages=hi,  # type: ignore[arg-type]
        )


def announced_checkpoint_names(client: openai.OpenAI, job_id: str) -> dict[int, str]:
    """Step → the model name its "Checkpoint created" event gave out (what a user copies)."""
    found = (
        re.fullmatch(r"Checkpoint created at step (\d+) with Snapshot ID: (\S+)", e.message)
        for e in events_oldest_first(client, job_id)
    )
    return {int(m[1]): m[2] for m in found if m}


def assert_announced_names_resolve(client: openai.OpenAI, tuned: Tuned) -> None:
    announced = announced_checkpoint_names(client, tuned.job_id)
    kept = client.fine_tuning.jobs.checkpoints.list(tuned.job_id).data
    final = kept[0]
    assert final.fine_tuned_model_checkpoint == tuned.model  # the final checkpoint is the model
    assert announced[final.step_number] != tuned.model  # ... but was announced under its own name
    hi = [{"role": "user", "content": "hi"}]
    for checkpoint in kept:
        name = announced[checkpoint.step_number]
        assert client.models.retrieve(name).id == name
        answer = client.chat.completions.create(model=name, messages=hi, max_completion_tokens=2)  # type: ignore[arg-type]
        # The final checkpoint's announced name is an alias: it answers as the model it became.
        assert answer.model == (tuned.model if checkpoint is final else name)
    messages, expected = held_out_prompts()[0]
    alias = client.chat.completions.create(
        model=announced[final.step_number],
        messages=messages,  # type: ignore[arg-type]
        temperature=0,
    )
    assert (alias.choices[0].message.content or "").strip() == expected


def test_every_announced_checkpoint_name_keeps_resolving(tuned: Tuned) -> None:
    """Names copied from the events work after the job succeeded, also in a server process started
    afresh on the same database and storage (nothing of it lives in a process)."""
    assert_announced_names_resolve(tuned.client, tuned)
    env = {k: v for k, v in tuned.server.env.items() if k.startswith("FTAPI_")}
    env["FTAPI_MAX_CONCURRENT_JOBS"] = "0"
    with run_server(tuned.server.data_dir, env, log_name="restarted.log") as restarted:
        assert_announced_names_resolve(sdk(restarted, tuned.project.key), tuned)
    stranger = sdk(tuned.server, new_project(tuned.server).key)
    with pytest.raises(openai.NotFoundError) as err:
        stranger.models.retrieve(final_alias(tuned))
    assert err.value.code == "model_not_found"


def final_alias(tuned: Tuned) -> str:
    announced = announced_checkpoint_names(tuned.client, tuned.job_id)
    return announced[max(announced)]


def test_deleting_a_model(tuned: Tuned) -> None:
    client = tuned.client
    with pytest.raises(openai.PermissionDeniedError):
        client.models.delete("tiny-chat")
    stranger = sdk(tuned.server, new_project(tuned.server).key)
    with pytest.raises(openai.NotFoundError):
        stranger.models.delete(tuned.model)
    deleted = client.models.delete(tuned.model)
    assert (deleted.id, deleted.deleted) == (tuned.model, True)
    assert tuned.model not in [m.id for m in client.models.list()]
    with pytest.raises(openai.NotFoundError) as gone:
        client.chat.completions.create(model=tuned.model, messages=[{"role": "user", "content": "hi"}])
    assert gone.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(tuned.model)
    with pytest.raises(openai.NotFoundError):
        client.models.delete(tuned.model)
    with pytest.raises(openai.NotFoundError):  # the final checkpoint's announced name went with it
        client.models.retrieve(final_alias(tuned))
    # The job keeps its record; its other checkpoints are models of their own.
    assert client.fine_tuning.jobs.retrieve(tuned.job_id).fine_tuned_model == tuned.model
    assert (
        client.chat.completions.create(
            model=tuned.checkpoint, messages=[{"role": "user", "content": "hi"}], max_completion_tokens=2
        ).model
        == tuned.checkpoint
    )
    body = json.loads(client.models.with_raw_response.delete(tuned.checkpoint).text)
    assert body == {"id": tuned.checkpoint, "object": "model", "deleted": True}
