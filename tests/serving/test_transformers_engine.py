"""What only the in-process transformers engine promises: full models, its adapter LRU, refusals,
lazy imports, a free event loop during generation, and generation that stops with its client."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from serving.errors import EngineRequestError
from serving.models import LocalModel
from serving.transformers_engine import Choice, TransformersEngine
from tests.serving.test_engine_contract import (
    BASE_NAME,
    count_right,
    held_out,
    label_of,
    local_model,
    trained,
)
from tests.support import vllm as vllm_support

sentiment_lora = vllm_support.sentiment_lora  # a fixture: the adapter is trained once per session

ASYNC_SESSION = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def lora_model(sentiment_lora: LocalModel) -> LocalModel:
    return sentiment_lora


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> LocalModel:
    return LocalModel(BASE_NAME, BASE_NAME, str(vllm_support.tiny_chat_workdir(tmp_path_factory)[1]), "base")


@pytest.fixture(scope="module")
def full_model(tmp_path_factory: pytest.TempPathFactory) -> LocalModel:
    full = trained(tmp_path_factory, "full")
    return local_model(tmp_path_factory, full, "ft:tiny-chat:p:sentiment:full0001", "full")


@pytest.fixture
async def engine() -> AsyncIterator[TransformersEngine]:
    engine = TransformersEngine(max_loaded_adapters=2)
    yield engine
    await engine.aclose()


def prompt(model: LocalModel, **params: Any) -> dict[str, Any]:
    return {"model": model.name, "messages": held_out()[0][0], "temperature": 0, **params}


def test_importing_the_engine_leaves_the_ml_stack_unloaded() -> None:
    code = (
        "import sys, serving.transformers_engine\n"
        "heavy = {'torch', 'transformers', 'peft'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


NOT_SERVABLE = "/nonexistent/never-loaded"  # a refused request must not reach the model


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"logit_bias": {"5": 10}}, "logit_bias"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"n": 0}, "n"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": "high"}, "top_p"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages.0.content"),
        ({"messages": []}, "messages"),
    ],
)
@ASYNC_SESSION
async def test_unsupported_or_bad_parameters_are_refused(
    engine: TransformersEngine, params: dict[str, Any], param: str
) -> None:
    model = LocalModel(BASE_NAME, BASE_NAME, NOT_SERVABLE, "base")
    request = {"model": BASE_NAME, "messages": [{"role": "user", "content": "hi"}], **params}

    with pytest.raises(EngineRequestError) as refused:
        await engine.chat(model, request)
    with pytest.raises(EngineRequestError) as refused_stream:
        await anext(aiter(engine.chat_stream(model, {**request, "stream": True})))

    assert refused.value.param == refused_stream.value.param == param
    assert refused.value.status == 400
    assert engine.models.bases == {}


@pytest.mark.parametrize(
    ("stops", "tokens", "streamed", "text", "reason"),
    [
        ((), ["ab", "cd"], ["ab", "cd"], "abcd", None),
        (("cd",), ["ab", "c", "d", "ef"], ["ab", "", ""], "ab", "stop"),  # "c" waits: it may start "cd"
        (("cx",), ["ab", "c", "d"], ["ab", "", "cd"], "abcd", None),  # released once it cannot
        (("b c",), ["ab", " ", "cd"], ["a", "", ""], "a", "stop"),  # across three tokens
        (("é",), ["a", "\xc3", "\xa9"], ["a", "", ""], "a", "stop"),  # a character split over two tokens
    ],
)
def test_choice_holds_back_what_may_become_a_stop_string(
    stops: tuple[str, ...], tokens: list[str], streamed: list[str], text: str, reason: str | None
) -> None:
    choice = Choice(ByteTokenizer(tokens), stops)

    out = []
    for i in range(len(tokens)):
        if choice.finish_reason is None:
            choice.push(i, end_of_sequence=False)
            out.append(choice.pending())

    assert out == streamed
    assert choice.text == text
    assert choice.finish_reason == reason
    assert choice.tokens == len(streamed)


class ByteTokenizer:
    """Token i is the i-th string, taken as latin-1 bytes and decoded as UTF-8 (like byte-level BPE)."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

    def decode(self, ids: list[int], **_: Any) -> str:
        return b"".join(self.pieces[i].encode("latin-1") for i in ids).decode("utf-8", errors="replace")


@pytest.mark.slow
@ASYNC_SESSION
async def test_prompt_beyond_the_context_is_refused(
    engine: TransformersEngine, base_model: LocalModel
) -> None:
    long_prompt = [{"role": "user", "content": "great product " * 400}]
    fits = [{"role": "user", "content": "great product"}]

    for messages, limit in ((long_prompt, None), (fits, 10_000)):
        with pytest.raises(EngineRequestError) as refused:
            await engine.chat(base_model, {"messages": messages, "max_completion_tokens": limit})
        assert refused.value.code == "context_length_exceeded"
        assert refused.value.param == "messages"


@pytest.mark.slow
@ASYNC_SESSION
async def test_full_fine_tune_answers_the_tuned_label(
    engine: TransformersEngine, full_model: LocalModel
) -> None:
    model = full_model
    right = await count_right(engine, model)
    streamed = [part async for part in engine.chat_stream(model, prompt(model, stream=True))]

    assert right >= 13, f"the full model answered {right}/15 held-out prompts right"
    assert list(engine.models.full) == [model.name]
    assert engine.models.bases == {}  # a full model does not need its base in memory
    assert streamed[-1] == b"data: [DONE]\n\n"


@pytest.mark.slow
@ASYNC_SESSION
async def test_adapters_beyond_the_limit_are_evicted_and_reload_on_use(
    engine: TransformersEngine, lora_model: LocalModel
) -> None:
    a, b, c = (replace(lora_model, name=f"{lora_model.name}-{x}") for x in "abc")
    for model in (a, b, c):
        await engine.load(model)
    base = engine.models.bases[lora_model.base_path]
    assert list(engine.models.adapters) == [b.name, c.name]  # a, least recently used, went
    assert len(base.model.peft_config) == 2

    out = await engine.chat(a, prompt(a, max_completion_tokens=16))

    assert label_of(out["choices"][0]["message"]["content"]) == held_out()[0][1]
    assert list(engine.models.adapters) == [c.name, a.name]
    await engine.unload(c.name)
    await engine.unload(a.name)
    assert not engine.models.adapters
    assert not hasattr(base.model, "peft_config")  # back to the plain base model


async def ticking_while(work: asyncio.Future[Any]) -> tuple[float, float]:
    """Run `work` while a ticker sleeps 5 ms at a time: (longest gap between ticks, time `work` took)."""
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def tick() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            gaps.append(loop.time() - before)

    ticker = asyncio.create_task(tick())
    started = loop.time()
    await work
    took = loop.time() - started
    ticker.cancel()
    return max(gaps), took


@pytest.mark.slow
@ASYNC_SESSION
async def test_event_loop_stays_responsive_during_generation(
    engine: TransformersEngine, base_model: LocalModel
) -> None:
    await engine.load(base_model)
    body = prompt(base_model, max_completion_tokens=200)
    generation = asyncio.ensure_future(engine.chat(base_model, body))

    longest_gap, took = await ticking_while(generation)

    assert generation.result()["usage"]["completion_tokens"] >= 100
    assert longest_gap < took / 10, f"the loop stalled {longest_gap:.3f}s during a {took:.3f}s generation"


@pytest.mark.slow
@ASYNC_SESSION
async def test_closing_a_stream_stops_its_generation(
    engine: TransformersEngine, base_model: LocalModel
) -> None:
    body = prompt(base_model, max_completion_tokens=400)
    started = time.monotonic()
    whole = await engine.chat(base_model, body)
    full_time = time.monotonic() - started
    assert whole["usage"]["completion_tokens"] >= 200

    stream = engine.chat_stream(base_model, {**body, "stream": True})
    parts = [await anext(stream) for _ in range(3)]  # the role chunk and two pieces of text
    await stream.aclose()
    started = time.monotonic()
    await engine.chat(base_model, prompt(base_model, max_completion_tokens=1))  # waits for the worker
    after_close = time.monotonic() - started

    assert b'"content":""' in parts[0]
    assert after_close < full_time / 4, f"{after_close:.2f}s after closing vs {full_time:.2f}s for it all"
