"""The InferenceEngine contract, run against every engine on tiny-chat and a LoRA adapter tuned on it.

`engine_under_test` is parametrized over the engines: "vllm" is tests/support/vllm.py's `vllm_engine`
(a real vLLM server, started once per session), "transformers" one in-process engine per session.
Base and adapter come from tests/support/vllm.py too, so every engine serves the same files and the
adapter is trained once. The helpers at the top are shared with test_transformers_engine.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import pytest

from serving.cache import WeightsCache
from serving.engine import InferenceEngine
from serving.models import LocalModel
from storage.local import LocalBlobStore
from tests.support import vllm as vllm_support
from tests.support.adapters import TrainedModel, train_sentiment
from tests.support.sentiment import held_out_prompts
from trainer.tiny import resolve_base_model

# pytest finds fixtures among a module's names: these bring in tests/support/vllm.py's.
sentiment_lora = vllm_support.sentiment_lora
vllm_server = vllm_support.vllm_server
vllm_engine = vllm_support.vllm_engine

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

ENGINES = ["transformers", "vllm"]
BASE_NAME = "tiny-chat"


# --- shared helpers (plain functions: the fixtures that use them live in each module) ---


def trained(tmp_path_factory: pytest.TempPathFactory, mode: Literal["lora", "full"]) -> TrainedModel:
    """Train tiny-chat on the sentiment task once per session and mode, whichever module asks first."""
    workdir = tmp_path_factory.getbasetemp() / f"sentiment-{mode}"
    record = workdir / "trained.json"
    if record.exists():
        saved = json.loads(record.read_text())
        return TrainedModel(Path(saved["store_root"]), saved["weights_prefix"], Path(saved["cache_dir"]))
    workdir.mkdir(parents=True, exist_ok=True)
    model = train_sentiment(workdir, mode)
    fields = {"store_root": str(model.store_root), "weights_prefix": model.weights_prefix}
    record.write_text(json.dumps({**fields, "cache_dir": str(model.cache_dir)}))
    return model


def local_model(
    tmp_path_factory: pytest.TempPathFactory, model: TrainedModel, name: str, kind: Literal["lora", "full"]
) -> LocalModel:
    """`model` as the API hands it to an engine: weights copied through the WeightsCache."""
    cache = WeightsCache(tmp_path_factory.getbasetemp() / "weights", LocalBlobStore(model.store_root))
    weights = asyncio.run(cache.materialize(model.weights_prefix))
    rank = json.loads((weights / "adapter_config.json").read_text())["r"] if kind == "lora" else None
    base_path = resolve_base_model("builtin:tiny-chat", model.cache_dir)
    return LocalModel(name, BASE_NAME, base_path, kind, weights_dir=weights, lora_rank=rank)


def held_out() -> list[tuple[list[dict[str, Any]], str]]:
    """(prompt messages, the label the tuned model must answer) for the 15 held-out examples."""
    return [(messages, json.loads(answer)["label"]) for messages, answer in held_out_prompts()]


def label_of(content: str | None) -> str | None:
    try:
        answer = json.loads(content or "")
    except ValueError:
        return None
    return answer.get("label") if isinstance(answer, dict) else None


async def count_right(engine: InferenceEngine, model: LocalModel) -> int:
    right = 0
    for messages, label in held_out():
        body = {"model": model.name, "messages": messages, "temperature": 0, "max_completion_tokens": 16}
        out = await engine.chat(model, body)
        right += label_of(out["choices"][0]["message"]["content"]) == label
    return right


async def sse_events(stream: AsyncIterator[bytes]) -> list[Any]:
    """The `data:` payloads of a stream, JSON-decoded except the final "[DONE]"."""
    raw = b"".join([part async for part in stream]).decode()
    events: list[Any] = []
    for block in raw.split("\n\n"):
        if block:
            assert block.startswith("data: "), block
            data = block.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def streamed_text(chunks: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks
        if c["choices"] and c["choices"][0]["index"] == index
    )


def body(model: LocalModel, **params: Any) -> dict[str, Any]:
    return {"model": model.name, "messages": held_out()[0][0], "temperature": 0, **params}


# --- fixtures ---


@pytest.fixture(scope="session")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> LocalModel:
    """The tiny-chat the adapter was trained on and the vLLM server serves."""
    _, base_path = vllm_support.tiny_chat_workdir(tmp_path_factory)
    return LocalModel(BASE_NAME, BASE_NAME, str(base_path), "base")


@pytest.fixture(scope="session")
def lora_model(sentiment_lora: LocalModel, base_model: LocalModel) -> LocalModel:
    assert sentiment_lora.base_path == base_model.base_path
    return sentiment_lora


@pytest.fixture(scope="session")
async def transformers_engine() -> AsyncIterator[InferenceEngine]:
    from serving.transformers_engine import TransformersEngine

    engine = TransformersEngine()
    yield engine
    await engine.aclose()


@pytest.fixture(params=ENGINES)
def engine_under_test(request: pytest.FixtureRequest) -> InferenceEngine:
    engine: InferenceEngine = request.getfixturevalue(f"{request.param}_engine")
    return engine


# --- the contract ---


async def test_base_chat_names_the_model_and_counts_tokens(
    engine_under_test: InferenceEngine, base_model: LocalModel
) -> None:
    out = await engine_under_test.chat(base_model, body(base_model, max_completion_tokens=8))

    assert out["object"] == "chat.completion"
    assert out["id"].startswith("chatcmpl-")
    assert out["model"] == base_model.name
    assert isinstance(out["created"], int)
    [choice] = out["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    usage = out["usage"]
    assert usage["prompt_tokens"] > 0
    assert 1 <= usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_adapter_answers_the_tuned_label_and_the_base_does_not(
    engine_under_test: InferenceEngine, base_model: LocalModel, lora_model: LocalModel
) -> None:
    tuned = await count_right(engine_under_test, lora_model)
    base = await count_right(engine_under_test, base_model)

    assert tuned >= 13, f"the adapter answered {tuned}/15 held-out prompts right"
    assert base <= 3, f"the base model answered {base}/15 held-out prompts right"


async def test_adapter_chat_names_the_adapter(
    engine_under_test: InferenceEngine, lora_model: LocalModel
) -> None:
    out = await engine_under_test.chat(lora_model, body(lora_model, max_completion_tokens=16))

    assert out["model"] == lora_model.name
    assert out["choices"][0]["finish_reason"] == "stop"


async def test_stream_sends_role_content_finish_usage_and_done(
    engine_under_test: InferenceEngine, lora_model: LocalModel
) -> None:
    whole = await engine_under_test.chat(lora_model, body(lora_model, max_completion_tokens=16))
    stream_body = body(
        lora_model, max_completion_tokens=16, stream=True, stream_options={"include_usage": True}
    )

    events = await sse_events(engine_under_test.chat_stream(lora_model, stream_body))

    assert events[-1] == "[DONE]"
    chunks, usage_chunk = events[:-2], events[-2]
    assert len({c["id"] for c in events[:-1]}) == 1
    assert events[0]["id"].startswith("chatcmpl-")
    for chunk in events[:-1]:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == lora_model.name
        assert isinstance(chunk["created"], int)
    # OpenAI sends `usage: null` on these; vLLM leaves the key out. The SDK reads both as None.
    assert all(c.get("usage") is None for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content_chunks = [c for c in chunks[1:-1] if c["choices"][0]["delta"].get("content")]
    assert len(content_chunks) >= 2, "text arrives token by token, not in one piece"
    last = chunks[-1]["choices"][0]
    assert last["finish_reason"] == "stop"
    assert not last["delta"].get("content")
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert streamed_text(chunks) == whole["choices"][0]["message"]["content"]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"]
    assert usage_chunk["usage"]["prompt_tokens"] == whole["usage"]["prompt_tokens"]
    assert usage_chunk["usage"]["total_tokens"] == whole["usage"]["total_tokens"]


async def test_stop_string_cuts_the_text(engine_under_test: InferenceEngine, lora_model: LocalModel) -> None:
    whole = (await engine_under_test.chat(lora_model, body(lora_model, max_completion_tokens=16)))["choices"][
        0
    ]
    text = whole["message"]["content"]
    assert "label" in text, text

    cut = await engine_under_test.chat(lora_model, body(lora_model, stop=["label", "never-there"]))
    events = await sse_events(
        engine_under_test.chat_stream(lora_model, body(lora_model, stream=True, stop="bel"))
    )

    assert cut["choices"][0]["message"]["content"] == text[: text.index("label")]
    assert cut["choices"][0]["finish_reason"] == "stop"
    chunks = events[:-1]
    assert streamed_text(chunks) == text[: text.index("bel")]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("param", ["max_completion_tokens", "max_tokens"])
async def test_one_token_limit_finishes_with_length(
    engine_under_test: InferenceEngine, lora_model: LocalModel, param: str
) -> None:
    out = await engine_under_test.chat(lora_model, body(lora_model, **{param: 1}))

    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 1


async def test_seeded_sampling_repeats(engine_under_test: InferenceEngine, base_model: LocalModel) -> None:
    params = {"temperature": 1.0, "seed": 1234, "max_completion_tokens": 12}

    first = await engine_under_test.chat(base_model, body(base_model, **params))
    second = await engine_under_test.chat(base_model, body(base_model, **params))

    assert first["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]


async def test_n_gives_n_choices(engine_under_test: InferenceEngine, base_model: LocalModel) -> None:
    out = await engine_under_test.chat(
        base_model, body(base_model, n=2, temperature=1.0, max_completion_tokens=4)
    )

    assert [c["index"] for c in out["choices"]] == [0, 1]
    usage = out["usage"]
    assert 2 <= usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_unloaded_adapter_loads_again_on_use(
    engine_under_test: InferenceEngine, lora_model: LocalModel
) -> None:
    await engine_under_test.load(lora_model)
    await engine_under_test.unload(lora_model.name)
    await engine_under_test.unload("ft:tiny-chat:p:never:loaded00")  # unknown names are a no-op

    out = await engine_under_test.chat(lora_model, body(lora_model, max_completion_tokens=16))

    assert label_of(out["choices"][0]["message"]["content"]) == held_out()[0][1]


async def test_load_is_idempotent(
    engine_under_test: InferenceEngine, base_model: LocalModel, lora_model: LocalModel
) -> None:
    for model in (base_model, lora_model, base_model, lora_model):
        await engine_under_test.load(model)

    out = await engine_under_test.chat(lora_model, body(lora_model, max_completion_tokens=16))

    assert label_of(out["choices"][0]["message"]["content"]) == held_out()[0][1]
    assert await engine_under_test.ready()
