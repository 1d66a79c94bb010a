"""Tuned models beyond chat, through the strict SDK on a server that trains: fine-tuning a
fine-tuned model (it continues from the adapter) and sharing a model with another project
(checkpoint permissions), and /v1/responses on the transformers engine. One tuned model is trained
per server; slow (real training on the CPU).
"""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import httpx
import openai
import pytest

from tests.api.test_models_chat import Tuned, sdk
from tests.api.test_openai_schema import SPEC, assert_matches
from tests.api.test_responses_translate import SCHEMA_OF
from tests.conftest import new_project
from tests.support.blobs import stored_bytes
from tests.support.jobs import wait_for_status
from tests.support.sentiment import held_out_prompts, sentiment_sets, to_jsonl
from tests.support.server import RunningServer

# Training on a shared 2-core machine can take minutes even for these short jobs.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def tuned(training_server: RunningServer) -> Tuned:
    """A short LoRA job of tiny-chat (2 epochs, 20 steps: two checkpoints, a clearly trained
    adapter). Its answers are not asserted; what is compared is weights and translations."""
    project = new_project(training_server)
    client = sdk(training_server, project.key)
    fid = client.files.create(file=("s.jsonl", to_jsonl(sentiment_sets()[0])), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=fid,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
        suffix="parent",
    )
    done = wait_for_status(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=1800)
    assert done.status == "succeeded" and done.fine_tuned_model, done.error
    checkpoints = client.fine_tuning.jobs.checkpoints.list(done.id).data
    assert [c.step_number for c in checkpoints] == [20, 10]
    model = done.fine_tuned_model
    return Tuned(training_server, project, client, done.id, model, checkpoints[1].fine_tuned_model_checkpoint)


def lora_b(server: RunningServer, project_id: str, job_id: str) -> dict[str, Any]:
    """The LoRA B matrices of a job's adapter, read from the server's storage (local or S3). B
    starts at zero: a trained adapter's B is what training put there."""
    from safetensors.numpy import load

    data = stored_bytes(server, f"jobs/{project_id}/{job_id}/model/adapter_model.safetensors")
    return {name: t for name, t in load(data).items() if "lora_B" in name}


def relative_distance(a: dict[str, Any], b: dict[str, Any]) -> float:
    import numpy as np

    assert a.keys() == b.keys() and a
    diff = sum(float(np.sum((a[k] - b[k]) ** 2)) for k in a)
    return (diff / sum(float(np.sum(b[k] ** 2)) for k in b)) ** 0.5


def test_fine_tuning_a_fine_tuned_model_continues_from_its_adapter(tuned: Tuned) -> None:
    client = tuned.client
    train, _ = sentiment_sets(seed=2)
    fid = client.files.create(file=("more.jsonl", to_jsonl(train)), purpose="fine-tune").id
    # One epoch at a hundredth of the learning rate: from a fresh adapter this would leave B near
    # zero; from the tuned model's adapter it keeps (nearly) its weights.
    job = client.fine_tuning.jobs.create(
        model=tuned.model,
        training_file=fid,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 1, "learning_rate_multiplier": 0.01}},
        },
        suffix="child",
    )
    assert job.model == tuned.model  # as OpenAI shows it: the model the job was asked to tune
    done = wait_for_status(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=300)
    assert done.status == "succeeded", done.error
    assert done.model == tuned.model
    # Named after the catalogue model underneath, as OpenAI names a model tuned from a tuned one.
    child = done.fine_tuned_model or ""
    assert child.startswith("ft:tiny-chat:") and ":child:" in child and child != tuned.model
    assert client.files.retrieve(done.result_files[0]).filename == "step_metrics.csv"
    # The child's adapter is the parent's, barely moved: started from zero, its B matrices would be
    # about 20 times smaller than the parent's after 10 steps at this rate (distance near 1).
    parent_b = lora_b(tuned.server, tuned.project.id, tuned.job_id)
    child_b = lora_b(tuned.server, tuned.project.id, done.id)
    assert relative_distance(child_b, parent_b) < 0.2
    assert _chat(client, child) == child  # and it is served

    # A checkpoint is a starting point too; a model that is not ours (or does not exist) is not.
    from_checkpoint = client.fine_tuning.jobs.create(model=tuned.checkpoint, training_file=fid)
    assert from_checkpoint.model == tuned.checkpoint
    assert client.fine_tuning.jobs.cancel(from_checkpoint.id).status == "cancelled"
    stranger = sdk(tuned.server, new_project(tuned.server).key)
    stranger_file = stranger.files.create(file=("s.jsonl", to_jsonl(train)), purpose="fine-tune").id
    for model in (tuned.model, "ft:tiny-chat:nobody::abcdefgh"):
        with pytest.raises(openai.BadRequestError) as err:
            stranger.fine_tuning.jobs.create(model=model, training_file=stranger_file)
        assert (err.value.code, err.value.param) == ("model_not_available", "model")


def _chat(client: openai.OpenAI, model: str) -> str:
    done = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_completion_tokens=2
    )
    return done.model


def test_sharing_a_model_with_another_project_and_revoking_it(tuned: Tuned) -> None:
    owner = tuned.client
    other_project = new_project(tuned.server)
    other = sdk(tuned.server, other_project.key)
    permissions = owner.fine_tuning.checkpoints.permissions
    with pytest.raises(openai.NotFoundError):
        other.models.retrieve(tuned.model)

    created = permissions.create(tuned.model, project_ids=[other_project.id])
    [grant] = created.data
    assert grant.id.startswith("cp_") and grant.project_id == other_project.id
    assert grant.object == "checkpoint.permission" and grant.created_at > 0
    # Granting again changes nothing: the same permission comes back.
    assert [p.id for p in permissions.create(tuned.model, project_ids=[other_project.id]).data] == [grant.id]

    # The other project may now use the model: retrieve, list, chat.
    assert other.models.retrieve(tuned.model).id == tuned.model
    assert tuned.model in [m.id for m in other.models.list()]
    assert _chat(other, tuned.model) == tuned.model
    # ... but not manage it, nor its other checkpoints (not shared).
    with pytest.raises(openai.NotFoundError):
        other.fine_tuning.checkpoints.permissions.create(tuned.model, project_ids=[tuned.project.id])
    with pytest.raises(openai.NotFoundError):
        other.models.delete(tuned.model)
    with pytest.raises(openai.NotFoundError):
        _chat(other, tuned.checkpoint)

    listed = permissions.list(tuned.model)
    assert [p.id for p in listed] == [grant.id] and listed.has_more is False
    assert [p.id for p in permissions.list(tuned.model, project_id="proj_none")] == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK deprecates retrieve for list
        retrieved = permissions.retrieve(tuned.model)
    assert [p.id for p in retrieved.data] == [
        grant.id
    ] and retrieved.first_id == retrieved.last_id == grant.id

    for project_ids, param in (
        ([tuned.project.id], "project_ids.0"),
        ([other_project.id, "proj_nope"], "project_ids.1"),
    ):
        with pytest.raises(openai.BadRequestError) as bad:
            permissions.create(tuned.model, project_ids=project_ids)
        assert bad.value.param == param
    with pytest.raises(openai.BadRequestError) as empty:
        permissions.create(tuned.model, project_ids=[])
    assert empty.value.param == "project_ids"

    deleted = permissions.delete(grant.id, fine_tuned_model_checkpoint=tuned.model)
    assert (deleted.id, deleted.deleted, deleted.object) == (grant.id, True, "checkpoint.permission")
    with pytest.raises(openai.NotFoundError):
        permissions.delete(grant.id, fine_tuned_model_checkpoint=tuned.model)
    # Revoked: the other project's next request fails, as if the model did not exist.
    with pytest.raises(openai.NotFoundError) as gone:
        _chat(other, tuned.model)
    assert gone.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        other.models.retrieve(tuned.model)
    assert tuned.model not in [m.id for m in other.models.list()]
    assert _chat(owner, tuned.model) == tuned.model  # the owner keeps it


@pytest.mark.skipif(not SPEC.exists(), reason="OpenAI's spec is kept in shared/reference beside the repo")
def test_permission_objects_match_openai_schemas(tuned: Tuned) -> None:
    other = new_project(tuned.server)
    http = httpx.Client(
        base_url=tuned.server.base_url, headers={"Authorization": f"Bearer {tuned.project.key}"}
    )
    path = f"/fine_tuning/checkpoints/{tuned.checkpoint}/permissions"
    created = http.post(path, json={"project_ids": [other.id]}).json()
    assert_matches(created, "ListFineTuningCheckpointPermissionResponse")
    assert_matches(created["data"][0], "FineTuningCheckpointPermission")
    assert_matches(
        http.get(path, params={"order": "ascending", "limit": 1}).json(),
        "ListFineTuningCheckpointPermissionResponse",
    )
    deleted = http.delete(f"{path}/{created['data'][0]['id']}").json()
    assert_matches(deleted, "DeleteFineTuningCheckpointPermissionResponse")
    assert_matches(http.delete(f"{path}/{created['data'][0]['id']}").json(), "ErrorResponse")


def chat_answer(client: openai.OpenAI, model: str, messages: list[dict[str, str]]) -> tuple[str, str]:
    """Greedy chat: the text and finish reason the response of the same request must carry."""
    done = client.chat.completions.create(
        model=model,
        messages=messages,  # type: ignore[arg-type]
        temperature=0,
        max_completion_tokens=12,
    )
    return done.choices[0].message.content or "", done.choices[0].finish_reason


def test_responses_answer_as_chat_does_with_base_and_tuned_models(tuned: Tuned) -> None:
    """/v1/responses on the transformers engine, through the strict SDK: greedy answers are those of
    chat for the same messages, from a message list or from instructions + a string."""
    client = tuned.client
    for model in (tuned.model, tuned.checkpoint, "tiny-chat"):
        for messages, _ in held_out_prompts()[:3]:
            text, finish = chat_answer(client, model, messages)
            done = client.responses.create(
                model=model,
                input=messages,  # type: ignore[arg-type]
                temperature=0,
                max_output_tokens=12,
            )
            assert done.object == "response" and done.model == model and done.id.startswith("resp_")
            assert done.output_text == text
            assert done.status == ("incomplete" if finish == "length" else "completed")
    messages, _ = held_out_prompts()[0]
    text, _ = chat_answer(client, tuned.model, messages)
    done = client.responses.create(
        model=tuned.model,
        instructions=messages[0]["content"],
        input=messages[1]["content"],
        temperature=0,
        max_output_tokens=12,
    )
    assert done.output_text == text
    assert done.instructions == messages[0]["content"] and done.max_output_tokens == 12
    [item] = done.output
    assert item.type == "message" and item.role == "assistant"
    assert done.usage is not None and done.usage.output_tokens > 0
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens
    # A cut-off answer is incomplete, as at OpenAI.
    cut = client.responses.create(model="tiny-chat", input="hi", max_output_tokens=1, temperature=0)
    assert cut.status == "incomplete" and cut.usage is not None and cut.usage.output_tokens == 1
    assert cut.incomplete_details is not None and cut.incomplete_details.reason == "max_output_tokens"


def test_responses_stream_events_in_order(tuned: Tuned) -> None:
    messages, _ = held_out_prompts()[1]
    text, finish = chat_answer(tuned.client, tuned.model, messages)
    events = list(
        tuned.client.responses.create(
            model=tuned.model,
            input=messages,  # type: ignore[arg-type]
            temperature=0,
            max_output_tokens=12,
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    ending = "response.incomplete" if finish == "length" else "response.completed"
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        ending,
    ]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1 and set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1]
    assert final.type == ending
    assert final.response.output_text == "".join(deltas) == text  # type: ignore[union-attr]
    assert final.response.usage is not None and final.response.usage.output_tokens > 1  # type: ignore[union-attr]
    assert events[0].type == "response.created" and events[0].response.status == "in_progress"
    assert len({e.response.id for e in events if e.type in ("response.created", ending)}) == 1  # type: ignore[union-attr]


def test_responses_refuse_what_they_cannot_do(tuned: Tuned) -> None:
    client = tuned.client
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model="ft:tiny-chat:nobody::abcdefgh", input="hi")
    assert missing.value.code == "model_not_found"
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"tools": [tool]}, "tools"),
        ({"previous_response_id": "resp_x"}, "previous_response_id"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input.0.content",
        ),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}, "input.0"),
        ({"input": []}, "input"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
    ]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as bad:
            client.responses.create(**{"model": tuned.model, "input": "hi", **extra})
        assert bad.value.param == param, (extra, bad.value)


@pytest.mark.skipif(not SPEC.exists(), reason="OpenAI's spec is kept in shared/reference beside the repo")
def test_responses_match_openai_schemas(tuned: Tuned) -> None:
    http = httpx.Client(
        base_url=tuned.server.base_url,
        headers={"Authorization": f"Bearer {tuned.project.key}"},
        timeout=120,
    )
    body = {"model": tuned.model, "input": "hi", "max_output_tokens": 4, "temperature": 0}
    assert_matches(http.post("/responses", json=body).json(), "Response")
    with http.stream("POST", "/responses", json={**body, "stream": True}) as stream:
        lines = [line for line in stream.iter_lines() if line.startswith("data: ")]
    events = [json.loads(line[6:]) for line in lines]
    assert len(events) >= 9
    for event in events:
        assert_matches(event, SCHEMA_OF[event["type"]])


def test_estimates_use_the_measured_throughput_and_running_jobs_get_an_estimated_finish(
    tuned: Tuned,
) -> None:
    """After a finished job of tiny-chat (the tuned model's), an estimate has a duration measured on this
    deployment; a running job's `estimated_finish` follows its progress events."""
    client = tuned.client
    fid = client.files.create(file=("s.jsonl", to_jsonl(sentiment_sets()[0])), purpose="fine-tune").id
    body = {
        "model": "tiny-chat",
        "training_file": fid,
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 20}}},
    }
    got: dict[str, Any] = client.post("/fine_tuning/jobs/estimate", body=body, cast_to=object)
    assert got["throughput"]["jobs"] >= 1 and got["throughput"]["tokens_per_second"] > 0
    assert got["estimated_duration_seconds"] == pytest.approx(
        got["trained_tokens"] / got["throughput"]["tokens_per_second"], rel=0.01
    )
    assert got["estimated_duration"].startswith("about ")
    # From a tuned model: the same base model's history, the job's model as asked.
    child = client.post("/fine_tuning/jobs/estimate", body={**body, "model": tuned.model}, cast_to=object)
    assert (child["model"], child["base_model"]) == (tuned.model, "tiny-chat")  # type: ignore[index]

    job = client.fine_tuning.jobs.create(**body)  # type: ignore[arg-type]
    assert job.estimated_finish is None
    try:
        deadline = time.monotonic() + 300
        while True:
            current = client.fine_tuning.jobs.retrieve(job.id)
            if current.status == "running" and current.estimated_finish is not None:
                break
            assert current.status in ("validating_files", "queued", "running"), current.error
            assert time.monotonic() < deadline, current
            time.sleep(0.5)
        # Due after now, and within the estimate's order of magnitude of the whole job.
        assert (
            time.time() - 5
            < current.estimated_finish
            < time.time() + 20 * got["estimated_duration_seconds"] + 600
        )
    finally:
        cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.estimated_finish is None
