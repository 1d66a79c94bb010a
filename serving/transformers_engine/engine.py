"""In-process inference with transformers and PEFT: base models, LoRA adapters and full fine-tunes.

All model work (loading, adapter switching, generation) runs on one worker thread, one job at a time:
the active adapter of a shared PEFT model is global state, and torch must stay off the event loop.
Tokens reach the async side through `loop.call_soon_threadsafe`. torch, transformers and peft are only
imported on that thread, so the API process can import this module at start-up for free.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import structlog

from serving.errors import EngineError, EngineUnavailable, UpstreamError
from serving.models import LocalModel
from serving.transformers_engine.generation import Delta, Done, Event, Failed, Finished, generate
from serving.transformers_engine.models import ModelStore
from serving.transformers_engine.request import parse_request
from serving.transformers_engine.wire import Chunks, completion, sse

log = structlog.get_logger()
T = TypeVar("T")

SHUT_DOWN = "The transformers engine is shut down."


class TransformersEngine:
    """Serves every kind of model in this process; slow, but needs nothing beyond transformers and PEFT."""

    name = "transformers"

    def __init__(
        self, max_loaded_adapters: int = 4, device: str = "cpu", max_loaded_full_models: int = 1
    ) -> None:
        if max_loaded_adapters < 1 or max_loaded_full_models < 1:
            raise ValueError("An engine must keep at least one adapter and one full model loaded.")
        self.models = ModelStore(device, max_loaded_adapters, max_loaded_full_models)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ftapi-transformers")
        self._running: set[threading.Event] = set()
        self._closed = False

    def serves(self, model: LocalModel) -> bool:
        return model.kind in ("base", "lora", "full")

    async def load(self, model: LocalModel) -> None:
        await self._run(lambda cancel: self.models.target(model))

    async def unload(self, name: str) -> None:
        await self._run(lambda cancel: self.models.unload(name))

    async def chat(self, model: LocalModel, body: dict[str, Any]) -> dict[str, Any]:
        request = parse_request(body)
        done = await self._run(lambda cancel: generate(self.models.target(model), request, cancel))
        return completion(model.name, done)

    async def chat_stream(self, model: LocalModel, body: dict[str, Any]) -> AsyncIterator[bytes]:
        request = parse_request(body, stream=True)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def emit(event: Event) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:  # the loop is gone: nobody is reading any more
                cancel.set()

        def job(cancel: threading.Event) -> None:
            try:
                emit(generate(self.models.target(model), request, cancel, emit))
            except Exception as exc:
                emit(Failed(_engine_error(exc)))

        cancel = threading.Event()
        future = self._submit(job, cancel)

        # A job cancelled before it ran (the engine shutting down) would leave this stream waiting.
        def never_ran(f: Future[None]) -> None:
            if f.cancelled():
                emit(Failed(EngineUnavailable(SHUT_DOWN)))

        future.add_done_callback(never_ran)
        try:
            first = await queue.get()
            if isinstance(first, Failed):
                raise first.error
            chunks = Chunks(model.name, request.include_usage)
            for index in range(request.n):
                yield chunks.choice(index, {"role": "assistant", "content": ""})
            async for event_bytes in _events(queue, chunks):
                yield event_bytes
        finally:
            # Reached when the stream ends and when the client goes away (the generator is closed).
            cancel.set()
            self._running.discard(cancel)

    async def ready(self) -> bool:
        return not self._closed

    async def aclose(self) -> None:
        self._closed = True
        for cancel in list(self._running):
            cancel.set()
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        self.models.clear()

    def _submit(self, fn: Callable[[threading.Event], T], cancel: threading.Event) -> Future[T]:
        if self._closed:
            raise EngineUnavailable(SHUT_DOWN)
        self._running.add(cancel)  # only touched on the event loop's thread
        return self._executor.submit(fn, cancel)

    async def _run(self, fn: Callable[[threading.Event], T]) -> T:
        cancel = threading.Event()
        try:
            return await asyncio.wrap_future(self._submit(fn, cancel))
        except asyncio.CancelledError:
            cancel.set()  # the caller gave up: let a generation in progress stop at its next token
            raise
        except EngineError:
            raise
        except Exception as exc:
            raise _engine_error(exc) from exc
        finally:
            self._running.discard(cancel)


async def _events(queue: asyncio.Queue[Event], chunks: Chunks) -> AsyncIterator[bytes]:
    while True:
        event = await queue.get()
        if isinstance(event, Delta):
            yield chunks.choice(event.index, {"content": event.text})
        elif isinstance(event, Finished):
            yield chunks.choice(event.index, {}, event.reason)
        elif isinstance(event, Failed):
            error = event.error
            body = {"message": error.message, "type": error.type, "code": error.code, "param": error.param}
            yield sse({"error": body})
            return
        elif isinstance(event, Done):
            if chunks.include_usage:
                yield chunks.usage(event.usage)
            yield b"data: [DONE]\n\n"
            return


def _engine_error(exc: BaseException) -> EngineError:
    if isinstance(exc, EngineError):
        return exc
    # Library messages can name local paths: log them, answer with a generic message.
    log.error("transformers.failed", error=repr(exc), exc_info=exc)
    return UpstreamError("The model failed to generate a completion.", status=500)
