"""OpenAI's shapes of a finished generation: a `chat.completion`, `chat.completion.chunk` events."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from serving.transformers_engine.generation import Done


class Chunks:
    """`chat.completion.chunk` events of one stream: one id, one `created`, the served model's name."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage

    def choice(self, index: int, delta: dict[str, str], finish_reason: str | None = None) -> bytes:
        entry = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._event([entry], None)

    def usage(self, usage: dict[str, int]) -> bytes:
        return self._event([], usage)

    def _event(self, choices: list[dict[str, Any]], usage: dict[str, int] | None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = usage
        return sse(chunk)


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def completion(model: str, done: Done) -> dict[str, Any]:
    choices: list[dict[str, Any]] = [
        {
            "index": i,
            "message": {"role": "assistant", "content": c.text, "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": c.finish_reason,
        }
        for i, c in enumerate(done.choices)
    ]
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": done.usage,
        "service_tier": None,
        "system_fingerprint": None,
    }
