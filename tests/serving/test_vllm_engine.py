"""VllmEngine against a real vLLM server on tiny-chat, with a LoRA adapter our trainer tuned.

The server starts once per session (tests/support/vllm.py). The restart test kills it with SIGKILL
and waits for the supervisor to bring it back, so it runs last.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from serving.errors import EngineRequestError, EngineUnavailable, UnsafeWeights
from serving.models import LocalModel
from serving.vllm import VllmConfig, VllmEngine, start_vllm_engine
from serving.vllm_env import MARKER, ensure_vllm_env
from tests.support import vllm as vllm_support
from tests.support.moto_server import free_port
from tests.support.sentiment import LABELS, sentiment_sets
from tests.support.vllm import VllmForTests, vllm_engine_for_tests

# Fixtures, under the names tests ask for (shared: the server starts once per session).
vllm_server = vllm_support.vllm_server
vllm_engine = vllm_support.vllm_engine
sentiment_lora = vllm_support.sentiment_lora

# The server's supervisor task lives on the session's loop; tests that use it run there too.
session_loop = pytest.mark.asyncio(loop_scope="session")


def prompt(row: dict[str, Any]) -> list[dict[str, Any]]:
    return row["messages"][:-1]


def label(row: dict[str, Any]) -> str:
    return str(json.loads(row["messages"][-1]["content"])["label"])


def answered_label(completion: dict[str, Any]) -> str | None:
    try:
        return str(json.loads(completion["choices"][0]["message"]["content"])["label"])
    except (ValueError, KeyError, TypeError):
        return None


async def collect(engine: VllmEngine, model: LocalModel, body: dict[str, Any]) -> list[bytes]:
    return [event async for event in engine.chat_stream(model, body)]


def chunks(events: list[bytes]) -> list[dict[str, Any]]:
    assert events[-1] == b"data: [DONE]\n\n"
    for event in events:
        assert event.startswith(b"data: ") and event.endswith(b"\n\n"), event
    return [json.loads(e[len(b"data: ") :]) for e in events[:-1]]


GREEDY = {"temperature": 0, "max_completion_tokens": 12}


@pytest.mark.slow
@session_loop
async def test_the_tuned_adapter_answers_held_out_prompts_and_the_base_does_not(
    vllm_server: VllmForTests, vllm_engine: VllmEngine, sentiment_lora: LocalModel
) -> None:
    _, held_out = sentiment_sets()
    base = vllm_server.base_model()

    async def ask(model: LocalModel, row: dict[str, Any]) -> str | None:
        completion = await vllm_engine.chat(model, {"model": model.name, "messages": prompt(row), **GREEDY})
        assert completion["model"] == model.name
        assert completion["object"] == "chat.completion" and completion["usage"]["completion_tokens"] > 0
        return answered_label(completion)

    tuned = await asyncio.gather(*(ask(sentiment_lora, row) for row in held_out))
    plain = await asyncio.gather(*(ask(base, row) for row in held_out))
    expected = [label(row) for row in held_out]
    assert sum(a == e for a, e in zip(tuned, expected, strict=True)) >= 14, tuned
    assert sum(a == e for a, e in zip(plain, expected, strict=True)) <= 5, plain


@pytest.mark.slow
@session_loop
@pytest.mark.parametrize("which", ["adapter", "renamed base"])
async def test_streams_carry_the_public_name_a_role_first_usage_last_and_done(
    which: str, vllm_server: VllmForTests, vllm_engine: VllmEngine, sentiment_lora: LocalModel
) -> None:
    # "renamed base": the name clients use differs from vLLM's, so every chunk is renamed on the way.
    model = sentiment_lora if which == "adapter" else vllm_server.base_model("tiny-chat-public")
    body = {
        "model": model.name,
        "messages": prompt(sentiment_sets()[1][0]),
        "stream_options": {"include_usage": True},
        **GREEDY,
    }
    parsed = chunks(await collect(vllm_engine, model, body))
    assert {c["model"] for c in parsed} == {model.name}
    assert {c["object"] for c in parsed} == {"chat.completion.chunk"}
    assert parsed[0]["choices"][0]["delta"]["role"] == "assistant"
    assert parsed[-1]["choices"] == [] and parsed[-1]["usage"]["completion_tokens"] > 0
    assert all(c["choices"] for c in parsed[:-1])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in parsed[:-1])
    if which == "adapter":
        assert json.loads(text) == {"label": label(sentiment_sets()[1][0])}

    completion = await vllm_engine.chat(model, body | {"stream": True})  # chat() never streams
    assert completion["model"] == model.name and completion["choices"][0]["message"]["content"] == text


@pytest.mark.slow
@session_loop
async def test_loading_twice_is_fine_and_an_unloaded_adapter_is_loaded_again_on_use(
    vllm_server: VllmForTests, sentiment_lora: LocalModel
) -> None:
    body = {"model": sentiment_lora.name, "messages": prompt(sentiment_sets()[1][1]), **GREEDY}
    first, second = vllm_engine_for_tests(vllm_server), vllm_engine_for_tests(vllm_server)
    try:
        await first.load(sentiment_lora)
        await first.load(sentiment_lora)
        await second.load(sentiment_lora)  # vLLM has it already (400), a fresh engine takes that as done
        await first.unload(sentiment_lora.name)
        await first.unload(sentiment_lora.name)  # unknown to vLLM by now: a no-op
        # `second` still believes it loaded the adapter: vLLM's 404 makes it load and retry once.
        assert answered_label(await second.chat(sentiment_lora, body)) == label(sentiment_sets()[1][1])
        await first.unload(sentiment_lora.name)
        assert answered_label(await first.chat(sentiment_lora, body)) == label(sentiment_sets()[1][1])
    finally:
        await first.aclose()
        await second.aclose()


BAD_REQUESTS = [
    ({"max_completion_tokens": 100_000}, "max_completion_tokens"),
    ({"temperature": -1}, "temperature"),
    ({"messages": "not a list"}, "messages"),
]


@pytest.mark.slow
@session_loop
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("change", "param"), BAD_REQUESTS)
async def test_requests_vllm_refuses_raise_engine_request_error_with_its_param(
    change: dict[str, Any], param: str, stream: bool, vllm_engine: VllmEngine, sentiment_lora: LocalModel
) -> None:
    body = {"model": sentiment_lora.name, "messages": [{"role": "user", "content": "hi"}]} | change
    with pytest.raises(EngineRequestError) as caught:
        if stream:
            await collect(vllm_engine, sentiment_lora, body)
        else:
            await vllm_engine.chat(sentiment_lora, body)
    assert caught.value.status == 400 and caught.value.param == param and caught.value.message


@pytest.mark.slow
@session_loop
async def test_sampling_options_reach_vllm(vllm_engine: VllmEngine, sentiment_lora: LocalModel) -> None:
    row = sentiment_sets()[1][2]
    body = {"model": sentiment_lora.name, "messages": prompt(row)}
    # stop: the adapter answers {"label": ...}; stopping at "label" leaves the opening brace.
    stopped = await vllm_engine.chat(sentiment_lora, body | GREEDY | {"stop": ["label"]})
    assert stopped["choices"][0]["message"]["content"] == '{"'
    sampled = {"temperature": 1.0, "n": 2, "seed": 7, "logprobs": True, "top_logprobs": 2}
    sampled |= {"max_completion_tokens": 8}
    one = await vllm_engine.chat(sentiment_lora, body | sampled)
    again = await vllm_engine.chat(sentiment_lora, body | sampled)
    assert len(one["choices"]) == 2
    assert [c["message"]["content"] for c in one["choices"]] == [
        c["message"]["content"] for c in again["choices"]
    ]
    assert len(one["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 2
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with_tools = await vllm_engine.chat(
        sentiment_lora, body | GREEDY | {"tools": tools, "tool_choice": "none"}
    )
    assert answered_label(with_tools) == label(row)
    as_json = await vllm_engine.chat(
        sentiment_lora,
        body | GREEDY | {"response_format": {"type": "json_object"}, "max_completion_tokens": 16},
    )
    assert json.loads(as_json["choices"][0]["message"]["content"]) == {"label": label(row)}


async def test_adapters_with_pickled_weights_never_reach_vllm(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    (tmp_path / "adapter_model.bin").write_bytes(b"pickle")
    engine = VllmEngine(f"http://127.0.0.1:{free_port()}", "tiny-chat")  # nothing listens: not reached
    try:
        with pytest.raises(UnsafeWeights):
            await engine.load(LocalModel("ft:x", "tiny-chat", "/base", "lora", tmp_path, 8))
    finally:
        await engine.aclose()


async def test_an_unreachable_server_is_unavailable_not_broken() -> None:
    engine = VllmEngine(f"http://127.0.0.1:{free_port()}/v1", "tiny-chat")
    base = LocalModel("tiny-chat", "tiny-chat", "/base", "base")
    body = {"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}]}
    try:
        assert await engine.ready() is False
        with pytest.raises(EngineUnavailable):
            await engine.chat(base, body)
        with pytest.raises(EngineUnavailable):
            await collect(engine, base, body)
    finally:
        await engine.aclose()


def test_serves_its_base_and_adapters_that_fit() -> None:
    engine = VllmEngine("http://127.0.0.1:1", "tiny-chat", max_lora_rank=16)
    assert engine.serves(LocalModel("tiny-chat", "tiny-chat", "/b", "base"))
    assert engine.serves(LocalModel("ft:a", "tiny-chat", "/b", "lora", Path("/w"), 16))
    assert not engine.serves(LocalModel("ft:b", "tiny-chat", "/b", "lora", Path("/w"), 32))
    assert not engine.serves(LocalModel("ft:c", "tiny-chat", "/b", "full", Path("/w")))
    assert not engine.serves(LocalModel("ft:d", "other", "/b", "lora", Path("/w"), 8))


def test_the_env_is_reinstalled_when_its_marker_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []

    def fake_run(command: list[str], **_: object) -> None:
        calls.append(command)
        if command[1:3] == ["-m", "venv"]:
            (Path(command[3]) / "bin").mkdir(parents=True)

    monkeypatch.setattr("serving.vllm_env.subprocess.run", fake_run)
    root = tmp_path / "env"
    (root / "lib").mkdir(parents=True)  # what a killed install leaves behind
    (root / "lib" / "half").write_text("x")
    assert ensure_vllm_env(root) == root / "bin" / "python"
    assert (root / MARKER).exists() and not (root / "lib").exists()
    assert [c[1:4] for c in calls] == [
        ["-m", "venv", str(root)],
        ["-m", "pip", "install"],
        ["-m", "pip", "uninstall"],
    ]
    assert ensure_vllm_env(root) == root / "bin" / "python" and len(calls) == 3  # done once


@pytest.mark.slow
@session_loop
async def test_an_external_server_is_used_by_url_and_may_see_our_cache_at_another_path(
    tmp_path: Path, vllm_server: VllmForTests, sentiment_lora: LocalModel
) -> None:
    assert sentiment_lora.weights_dir is not None
    cache_root = sentiment_lora.weights_dir.parent
    (tmp_path / "mounted").symlink_to(cache_root)  # plays a container's mount of the cache
    config = VllmConfig(url=vllm_server.server.url + "/v1", cache_path_in_server=str(tmp_path / "mounted"))
    engine = await start_vllm_engine(config, "tiny-chat", str(vllm_server.base_path), cache_root)
    model = replace(sentiment_lora, name="ft:tiny-chat:proj-vllm:mounted:abc12345")
    row = sentiment_sets()[1][0]
    try:
        assert engine.server is None
        completion = await engine.chat(model, {"model": model.name, "messages": prompt(row), **GREEDY})
        assert completion["model"] == model.name and answered_label(completion) == label(row)
        await engine.unload(model.name)
    finally:
        await engine.aclose()
    assert vllm_server.server.pid is not None  # not that engine's server to stop


@pytest.mark.slow
@session_loop
async def test_a_killed_server_is_restarted_and_adapters_answer_again(
    vllm_server: VllmForTests, vllm_engine: VllmEngine, sentiment_lora: LocalModel
) -> None:
    body = {"model": sentiment_lora.name, "messages": prompt(sentiment_sets()[1][3]), **GREEDY}
    before = await vllm_engine.chat(sentiment_lora, body)
    assert answered_label(before) in LABELS

    server = vllm_server.server
    old_pid, restarts = server.pid, server.restarts
    assert old_pid is not None
    long_answer = body | {"max_completion_tokens": 400, "ignore_eos": True}  # ignore_eos: vLLM's own
    stream = vllm_engine.chat_stream(sentiment_lora, long_answer)
    first = await anext(stream)
    assert first.startswith(b"data: {")
    os.kill(old_pid, signal.SIGKILL)
    rest = [event async for event in stream]
    assert rest[-1].startswith(b'data: {"error": ') and b"[DONE]" not in b"".join(rest)
    assert json.loads(rest[-1][len(b"data: ") :])["error"]["type"] == "server_error"

    with pytest.raises(EngineUnavailable):
        await vllm_engine.chat(sentiment_lora, body)
    await server.wait_ready(300)
    assert server.pid not in (None, old_pid) and server.restarts == restarts + 1
    # The new server never heard of the adapter: 404, reload, retry, all inside chat().
    after = await vllm_engine.chat(sentiment_lora, body)
    assert after["choices"][0]["message"] == before["choices"][0]["message"]
    assert await vllm_engine.ready()
