"""Responses ↔ chat completions, in one place: a /v1/responses request becomes a chat request for
the engines, and their chat completion (or stream of chunks) becomes a `response` object (or the
Responses stream events: response.created, response.in_progress, response.output_item.added,
response.content_part.added, response.output_text.delta ..., response.output_text.done,
response.content_part.done, response.output_item.done, response.completed), shaped as the SDK's
strict types and OpenAI's spec require.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from api.errors import InvalidRequest
from api.ids import random_base62
from api.responses.schemas import ResponseCreateParams

_ROLES = ("user", "assistant", "system", "developer")
_TEXT_PARTS = ("input_text", "output_text", "text")


def _content(item: dict[str, Any], index: int) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in _TEXT_PARTS:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise InvalidRequest(
                    f"Input content of type {kind!r} is not supported by this server; send text.",
                    param=f"input.{index}.content",
                )
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise InvalidRequest(
        "Each input message needs a 'content' string or list.", param=f"input.{index}.content"
    )


def chat_messages(params: ResponseCreateParams) -> list[dict[str, str]]:
    """`instructions` first (a system message), then the input: a string is one user message;
    a list holds messages (`{"role", "content"}`, with or without `"type": "message"`)."""
    messages = [{"role": "system", "content": params.instructions}] if params.instructions else []
    if isinstance(params.input, str):
        return [*messages, {"role": "user", "content": params.input}]
    for index, item in enumerate(params.input):
        if item.get("type", "message") != "message" or item.get("role") not in _ROLES:
            raise InvalidRequest(
                "Only message items (role user, assistant, system or developer) are supported by "
                "this server.",
                param=f"input.{index}",
            )
        role = "system" if item["role"] == "developer" else str(item["role"])
        messages.append({"role": role, "content": _content(item, index)})
    return messages


def chat_request(params: ResponseCreateParams) -> dict[str, Any]:
    body: dict[str, Any] = {"model": params.model, "messages": chat_messages(params)}
    if params.max_output_tokens is not None:
        body["max_completion_tokens"] = params.max_output_tokens
    for name in ("temperature", "top_p", "user"):
        if getattr(params, name) is not None:
            body[name] = getattr(params, name)
    if params.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


class ResponseBuilder:
    """One response's id, timestamps and echoed request fields."""

    def __init__(self, params: ResponseCreateParams) -> None:
        self.params = params
        self.id = "resp_" + random_base62(24)
        self.message_id = "msg_" + random_base62(24)
        self.created_at = int(time.time())

    def message(self, text: str, status: str) -> dict[str, Any]:
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": [part] if status != "in_progress" else [],
        }

    def response(
        self,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None = None,
        finish_reason: str | None = None,
    ) -> dict[str, Any]:
        p = self.params
        incomplete = status == "completed" and finish_reason == "length"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": "incomplete" if incomplete else status,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "instructions": p.instructions,
            "max_output_tokens": p.max_output_tokens,
            "model": p.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": None,
            "store": False,
            "temperature": p.temperature if p.temperature is not None else 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": p.top_p if p.top_p is not None else 1.0,
            "truncation": "disabled",
            "metadata": p.metadata or {},
            "background": False,
            # OpenAI's spec types these as an object and a string: absent (not null) until known.
            **({"usage": _usage(usage)} if usage is not None else {}),
            **({"user": p.user} if p.user is not None else {}),
        }

    def from_chat(self, completion: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed chat completion → a completed (or, cut by max_output_tokens, incomplete)
        response."""
        choice = (completion.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or ""
        finish = choice.get("finish_reason")
        item = self.message(text, "incomplete" if finish == "length" else "completed")
        return self.response("completed", [item], completion.get("usage") or {}, finish)


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _chunks(raw: bytes) -> list[dict[str, Any] | None]:
    """The JSON payloads of one or more SSE events (None for `[DONE]`)."""
    out: list[dict[str, Any] | None] = []
    for line in raw.decode().splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        out.append(None if data == "[DONE]" else json.loads(data))
    return out


def _event(payload: dict[str, Any]) -> bytes:
    return f"event: {payload['type']}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


async def stream_events(builder: ResponseBuilder, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Chat completion chunks → Responses stream events, numbered in order."""
    seq = 0

    def event(kind: str, **fields: Any) -> bytes:
        nonlocal seq
        payload = {"type": kind, **fields, "sequence_number": seq}
        seq += 1
        return _event(payload)

    ids = {"item_id": builder.message_id, "output_index": 0}
    started = builder.response("in_progress", [])
    yield event("response.created", response=started)
    yield event("response.in_progress", response=started)
    yield event("response.output_item.added", output_index=0, item=builder.message("", "in_progress"))
    empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    yield event("response.content_part.added", **ids, content_index=0, part=empty)
    text: list[str] = []
    usage: dict[str, Any] = {}
    finish: str | None = None
    try:
        async for raw in chunks:
            for chunk in _chunks(raw):
                if chunk is None:
                    continue
                if "error" in chunk:  # the engine's stream broke: say so and end, as OpenAI does
                    error = (
                        chunk["error"]
                        if isinstance(chunk["error"], dict)
                        else {"message": str(chunk["error"])}
                    )
                    yield event(
                        "error",
                        code=error.get("code") if isinstance(error.get("code"), str) else "server_error",
                        message=str(error.get("message") or "The model stopped generating."),
                        param=None,
                    )
                    return
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        text.append(delta)
                        yield event(
                            "response.output_text.delta", **ids, content_index=0, delta=delta, logprobs=[]
                        )
                    finish = choice.get("finish_reason") or finish
    finally:  # a client that went away stops the generation behind the stream
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
    full = "".join(text)
    status = "incomplete" if finish == "length" else "completed"
    done_part = {"type": "output_text", "text": full, "annotations": [], "logprobs": []}
    yield event("response.output_text.done", **ids, content_index=0, text=full, logprobs=[])
    yield event("response.content_part.done", **ids, content_index=0, part=done_part)
    item = builder.message(full, status)
    yield event("response.output_item.done", output_index=0, item=item)
    final = builder.response("completed", [item], usage, finish)
    yield event(
        "response.incomplete" if final["status"] == "incomplete" else "response.completed", response=final
    )
