"""The contract every inference engine meets. Both engines pass tests/serving/test_engine_contract.py.

Requests and responses are OpenAI chat-completion JSON objects (plain dicts): the API validated
the request, resolved `model` to a `LocalModel`, and passes the body on untouched otherwise, so
fields an engine understands (tools, response_format, logprobs, ...) reach it as clients sent them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from serving.models import LocalModel


class InferenceEngine(Protocol):
    name: str  # "vllm", "transformers": for logs and /ready

    def serves(self, model: LocalModel) -> bool:
        """Whether this engine can serve `model` (e.g. vLLM serves its base model and its adapters)."""
        ...

    async def load(self, model: LocalModel) -> None:
        """Make `model` answerable. Idempotent: loading a loaded model is a no-op."""
        ...

    async def unload(self, name: str) -> None:
        """Forget the model `name` (no-op when unknown). Later requests for it must load it again."""
        ...

    async def chat(self, model: LocalModel, body: dict[str, Any]) -> dict[str, Any]:
        """One `chat.completion` object whose `model` is `model.name`, with `usage`.

        Loads `model` first if needed (and again, once, if the engine forgot it). Raises
        serving.errors.EngineError subclasses; never returns an error object.
        """
        ...

    def chat_stream(self, model: LocalModel, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """Server-sent events for `stream: true`: `data: {chunk}\\n\\n` ... `data: [DONE]\\n\\n`.

        Chunks are `chat.completion.chunk` objects whose `model` is `model.name`; with
        `stream_options.include_usage` a last chunk has `choices: []` and `usage`. Failures before
        the first event raise EngineError (the API still answers with a status code); after it,
        the stream carries `data: {"error": {...}}\\n\\n` and ends.
        """
        ...

    async def ready(self) -> bool:
        """Whether the engine can answer now (a managed vLLM server may be starting)."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and child processes."""
        ...
