"""api/responses/translate.py without a server: chat chunks as the engines send them become
Responses stream events that OpenAI's spec and the SDK's strict types accept, completed or cut off.
(Through real servers and engines: tests/api/test_tuned_models.py, tests/api/test_serving_vllm.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from api.responses.schemas import ResponseCreateParams
from api.responses.translate import ResponseBuilder, stream_events
from tests.api.test_openai_schema import SPEC, assert_matches

SCHEMA_OF = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
}


def chunk(
    delta: dict[str, Any] | None, finish: str | None = None, usage: dict[str, int] | None = None
) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    body |= {"choices": choices, **({"usage": usage} if usage else {})}
    return f"data: {json.dumps(body)}\n\n".encode()


async def events(finish: str) -> list[dict[str, Any]]:
    async def chunks() -> AsyncIterator[bytes]:
        yield chunk({"role": "assistant", "content": ""})
        yield chunk({"content": "Hel"})
        yield chunk({"content": "lo"}, finish)
        yield chunk(None, usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
        yield b"data: [DONE]\n\n"

    builder = ResponseBuilder(ResponseCreateParams(model="m", input="hi", stream=True))
    return [json.loads(e.decode().split("data: ", 1)[1]) async for e in stream_events(builder, chunks())]


@pytest.mark.skipif(not SPEC.exists(), reason="OpenAI's spec is kept in shared/reference beside the repo")
@pytest.mark.parametrize(
    ("finish", "last"), [("stop", "response.completed"), ("length", "response.incomplete")]
)
def test_stream_events_match_the_spec_and_the_sdk(finish: str, last: str) -> None:
    got = asyncio.run(events(finish))
    assert [e["type"] for e in got][-1] == last and [e["sequence_number"] for e in got] == list(
        range(len(got))
    )
    strict = TypeAdapter(ResponseStreamEvent)
    for event in got:
        assert_matches(event, SCHEMA_OF[event["type"]])
        strict.validate_python(event)
    final = got[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hello" and final["usage"]["total_tokens"] == 5

    builder = ResponseBuilder(ResponseCreateParams(model="m", input="hi"))
    completion = {
        "choices": [{"message": {"content": "x"}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 1},
    }
    whole = builder.from_chat(completion)
    assert_matches(whole, "Response")
    assert Response.model_validate(whole).status == ("incomplete" if finish == "length" else "completed")
