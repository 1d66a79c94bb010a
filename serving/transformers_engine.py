"""In-process inference with transformers and PEFT: base models, LoRA adapters and full fine-tunes.

All model work (loading, adapter switching, generation) runs on one worker thread, one job at a time:
the active adapter of a shared PEFT model is global state, and torch must stay off the event loop.
Tokens reach the async side through `loop.call_soon_threadsafe`. torch, transformers and peft are only
imported on that thread, so the API process can import this module at start-up for free.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import structlog

from serving.errors import EngineError, EngineRequestError, EngineUnavailable, UpstreamError
from serving.models import LocalModel

log = structlog.get_logger()
T = TypeVar("T")

# Whoever needs these should use the vLLM engine: it implements them on the server side.
UNSUPPORTED = "This engine does not support `{}`; configure the vLLM engine for it."
SHUT_DOWN = "The transformers engine is shut down."


@dataclass(frozen=True)
class GenerationRequest:
    """The chat-completion parameters this engine acts on, checked; everything else was refused or ignored."""

    messages: list[dict[str, Any]]
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = None  # None: whatever context the prompt leaves
    stop: tuple[str, ...] = ()
    seed: int | None = None
    include_usage: bool = False


def parse_request(body: dict[str, Any], *, stream: bool = False) -> GenerationRequest:
    """Raise EngineRequestError (with `param`) for whatever this engine cannot honour."""
    _refuse_unsupported(body)
    max_tokens = body.get("max_completion_tokens")
    name = "max_completion_tokens"
    if max_tokens is None:
        max_tokens, name = body.get("max_tokens"), "max_tokens"
    if max_tokens is not None and not (_is_int(max_tokens) and max_tokens >= 1):
        raise EngineRequestError(f"`{name}` must be a positive integer.", param=name)
    options = body.get("stream_options")
    return GenerationRequest(
        messages=_messages(body.get("messages")),
        n=_number(body, "n", 1, 1, 128, integer=True),
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0),
        max_tokens=max_tokens,
        stop=_stops(body.get("stop")),
        seed=_number(body, "seed", None, -(2**63), 2**64 - 1, integer=True),
        include_usage=stream and isinstance(options, dict) and bool(options.get("include_usage")),
    )


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for param in ("tools", "functions", "logit_bias", "audio"):
        if body.get(param):
            raise EngineRequestError(UNSUPPORTED.format(param), param=param)
    for param in ("tool_choice", "function_call"):
        if body.get(param) not in (None, "none"):
            raise EngineRequestError(UNSUPPORTED.format(param), param=param)
    response_format = body.get("response_format") or {}
    if not isinstance(response_format, dict) or response_format.get("type", "text") != "text":
        raise EngineRequestError(UNSUPPORTED.format("response_format"), param="response_format")
    if body.get("logprobs") or body.get("top_logprobs"):
        param = "logprobs" if body.get("logprobs") else "top_logprobs"
        raise EngineRequestError(UNSUPPORTED.format(param), param=param)
    for param in ("presence_penalty", "frequency_penalty"):
        if body.get(param):  # transformers' repetition penalty is another formula: no silent stand-in
            raise EngineRequestError(UNSUPPORTED.format(param), param=param)
    if any(m != "text" for m in body.get("modalities") or ()):
        raise EngineRequestError("This engine only produces text.", param="modalities")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(
    body: dict[str, Any], param: str, default: Any, low: float, high: float, *, integer: bool = False
) -> Any:
    value = body.get(param)
    if value is None:
        return default
    ok = _is_int(value) if integer else isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise EngineRequestError(f"`{param}` must be {kind} from {low:g} to {high:g}.", param=param)
    return value


def _stops(stop: Any) -> tuple[str, ...]:
    stops = [stop] if isinstance(stop, str) else stop or []
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) for s in stops):
        raise EngineRequestError("`stop` must be a string or a list of at most 4 strings.", param="stop")
    return tuple(s for s in stops if s)


def _messages(messages: Any) -> list[dict[str, Any]]:
    """Plain `{role, content}` messages for the chat template; text parts joined, other parts refused."""
    if not isinstance(messages, list) or not messages:
        raise EngineRequestError("`messages` must be a non-empty list.", param="messages")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise EngineRequestError(
                f"`messages[{i}]` must be an object with a `role`.", param=f"messages.{i}"
            )
        content = message.get("content")
        if isinstance(content, list):
            if any(not isinstance(p, dict) or p.get("type") != "text" for p in content):
                raise EngineRequestError(
                    "This engine only reads text content parts.", param=f"messages.{i}.content"
                )
            content = "".join(str(p.get("text") or "") for p in content)
        elif content is not None and not isinstance(content, str):
            raise EngineRequestError("Message content must be text.", param=f"messages.{i}.content")
        out.append({"role": message["role"], "content": content or ""})
    return out


class Choice:
    """One generated sequence: tokens in, text out, cut before a stop string.

    Text is decoded incrementally over a small window of tokens (decoding everything each step is
    quadratic) and a trailing partial UTF-8 character waits for its next byte. `pending()` holds back
    a tail that could still become a stop string, so streamed text never shows part of one.
    """

    def __init__(self, tokenizer: Any, stops: tuple[str, ...]) -> None:
        self._tokenizer = tokenizer
        self._stops = stops
        self._longest = max((len(s) for s in stops), default=0)
        self.tokens = 0  # counted for usage, the end-of-sequence token included
        self._ids: list[int] = []
        self._start = 0  # window of ids whose decoded text is already in `text`: [_start, _read)
        self._read = 0
        self.text = ""
        self._searched = 0  # `text` before this offset holds no stop string
        self._sent = 0
        self.finish_reason: str | None = None

    def push(self, token: int, end_of_sequence: bool) -> None:
        self.tokens += 1
        if end_of_sequence:
            self.finish("stop")
            return
        self._ids.append(token)
        self._decode(final=False)

    def finish(self, reason: str) -> None:
        if self.finish_reason is None:
            self._decode(final=True)
            self.finish_reason = self.finish_reason or reason

    def pending(self) -> str:
        """Text not handed out yet that can no longer turn out to be part of a stop string."""
        end = len(self.text)
        if self.finish_reason is None:
            end -= max(
                (k for s in self._stops for k in range(1, len(s)) if self.text.endswith(s[:k])), default=0
            )
        out = self.text[self._sent : end]
        self._sent = max(self._sent, end)
        return out

    def _decode(self, *, final: bool) -> None:
        """Append newly decodable text, then look for a stop string in it."""
        if self.finish_reason is not None:
            return
        before = self._text(self._ids[self._start : self._read])
        after = self._text(self._ids[self._start :])
        # A character is at most 4 bytes: replacement characters after more tokens than that are for good.
        settled = final or not after.endswith("\ufffd") or len(self._ids) - self._read > 4
        if len(after) > len(before) and settled:
            self.text += after[len(before) :]
            self._start, self._read = self._read, len(self._ids)
        self._cut_at_stop()

    def _cut_at_stop(self) -> None:
        begin = max(0, self._searched - self._longest + 1)
        found = [i for i in (self.text.find(s, begin) for s in self._stops) if i >= 0]
        self._searched = len(self.text)
        if found:
            self.text = self.text[: min(found)]
            self.finish_reason = "stop"

    def _text(self, ids: list[int]) -> str:
        if not ids:
            return ""
        return str(self._tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))


# Events from the worker to the async side, in order: Started, then Delta/Finished, then Done.
@dataclass(frozen=True)
class Started:
    prompt_tokens: int


@dataclass(frozen=True)
class Delta:
    index: int
    text: str


@dataclass(frozen=True)
class Finished:
    index: int
    reason: str


@dataclass(frozen=True)
class Done:
    usage: dict[str, int]
    choices: list[Choice] = field(default_factory=list)


@dataclass(frozen=True)
class Failed:
    error: EngineError


Event = Started | Delta | Finished | Done | Failed
Emit = Callable[[Event], None]


@dataclass
class _Target:
    """A loaded model ready to generate: `scope()` switches the shared PEFT model to it."""

    model: Any
    tokenizer: Any
    context: int
    scope: Callable[[], AbstractContextManager[Any]] = nullcontext


@dataclass
class _Base:
    model: Any  # a PeftModel once an adapter was loaded onto it
    tokenizer: Any
    context: int
    adapters: set[str] = field(default_factory=set)


@dataclass
class _Tuned:
    """A LoRA adapter on a base (`base_path` set) or a full model (`target` set)."""

    weights_dir: Path | None
    adapter: str = ""
    base_path: str = ""
    tokenizer: Any = None
    target: _Target | None = None


class ModelStore:
    """Loaded models, touched only from the worker thread: one object per base, adapters by name, LRUs."""

    def __init__(self, device: str, max_adapters: int, max_full: int) -> None:
        self.device = device
        self.max_adapters = max_adapters
        self.max_full = max_full
        self.bases: dict[str, _Base] = {}
        self.base_names: dict[str, str] = {}  # served name of a base model → its base_path
        self.adapters: OrderedDict[str, _Tuned] = OrderedDict()  # least recently used first
        self.full: OrderedDict[str, _Tuned] = OrderedDict()

    def target(self, model: LocalModel) -> _Target:
        if model.kind == "full":
            return self._full(model)
        base = self._base(model.base_path)
        if model.kind == "base":
            self.base_names[model.name] = model.base_path
            if base.adapters:
                return _Target(base.model, base.tokenizer, base.context, base.model.disable_adapter)
            return _Target(base.model, base.tokenizer, base.context)
        tuned = self._adapter(model, base)
        base.model.set_adapter(tuned.adapter)
        return _Target(base.model, tuned.tokenizer, base.context)

    def unload(self, name: str) -> None:
        if name in self.adapters:
            self._drop_adapter(name)
        elif name in self.full:
            del self.full[name]
        elif name in self.base_names:  # its adapters go with it; they load again when asked for
            path = self.base_names.pop(name)
            for other in [n for n, t in self.adapters.items() if t.base_path == path]:
                del self.adapters[other]
            self.bases.pop(path, None)
        else:
            return
        gc.collect()

    def clear(self) -> None:
        self.bases.clear()
        self.base_names.clear()
        self.adapters.clear()
        self.full.clear()
        gc.collect()

    def _base(self, path: str) -> _Base:
        if path not in self.bases:
            model, context = self._load_model(path)
            self.bases[path] = _Base(model, _load_tokenizer(path), context)
        return self.bases[path]

    def _adapter(self, model: LocalModel, base: _Base) -> _Tuned:
        tuned = self.adapters.get(model.name)
        if (
            tuned is not None
            and tuned.weights_dir == model.weights_dir
            and tuned.base_path == model.base_path
        ):
            self.adapters.move_to_end(model.name)
            return tuned
        if tuned is not None:
            self._drop_adapter(model.name)
        if model.weights_dir is None:
            raise UpstreamError(f"The model `{model.name}` has no adapter weights.")
        from peft import PeftModel

        # PEFT keeps adapters in module dicts keyed by name, where "." and ":" are not allowed.
        key = "a" + uuid.uuid4().hex[:16]
        if isinstance(base.model, PeftModel):
            base.model.load_adapter(str(model.weights_dir), adapter_name=key)
        else:
            base.model = PeftModel.from_pretrained(base.model, str(model.weights_dir), adapter_name=key)
        base.model.eval()
        base.adapters.add(key)
        tokenizer = (
            _load_tokenizer(model.weights_dir) if _has_tokenizer(model.weights_dir) else base.tokenizer
        )
        tuned = _Tuned(model.weights_dir, key, model.base_path, tokenizer)
        self.adapters[model.name] = tuned
        while len(self.adapters) > self.max_adapters:
            self._drop_adapter(next(iter(self.adapters)))
        return tuned

    def _drop_adapter(self, name: str) -> None:
        tuned = self.adapters.pop(name)
        base = self.bases.get(tuned.base_path)
        if base is not None and tuned.adapter in base.adapters:
            base.model.delete_adapter(tuned.adapter)
            base.adapters.discard(tuned.adapter)
            if not base.adapters:  # a PeftModel without adapters cannot generate: back to the plain model
                base.model = base.model.unload()

    def _full(self, model: LocalModel) -> _Target:
        tuned = self.full.get(model.name)
        if tuned is None or tuned.target is None or tuned.weights_dir != model.weights_dir:
            self.full.pop(model.name, None)
            while len(self.full) >= self.max_full:  # make room before loading a whole model
                self.full.popitem(last=False)
                gc.collect()
            loaded, context = self._load_model(model.model_path)
            own = model.weights_dir if _has_tokenizer(model.weights_dir) else None
            tokenizer = _load_tokenizer(own or model.base_path)
            tuned = _Tuned(model.weights_dir, target=_Target(loaded, tokenizer, context))
            self.full[model.name] = tuned
        self.full.move_to_end(model.name)
        assert tuned.target is not None
        return tuned.target

    def _load_model(self, path: str) -> tuple[Any, int]:
        from transformers import AutoModelForCausalLM

        # Paths come from the weights cache, already checked to hold safetensors and no remote code.
        model: Any = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, use_safetensors=True, dtype="auto", trust_remote_code=False
        )
        model.to(self.device).eval()
        return model, int(getattr(model.config, "max_position_embeddings", None) or 2048)


def _has_tokenizer(weights_dir: Path | None) -> bool:
    # The trainer saves the tokenizer it trained with (chat template included) next to tuned weights.
    return weights_dir is not None and (weights_dir / "tokenizer_config.json").exists()


def _load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)


@cache
def _watcher_class() -> type:
    """A StoppingCriteria that sees every new token: it feeds the choices, streams, and ends rows early."""
    import torch
    from transformers import StoppingCriteria

    class Watcher(StoppingCriteria):
        def __init__(self, choices: list[Choice], eos: set[int], cancel: threading.Event, emit: Emit | None):
            self.choices, self.eos, self.cancel, self.emit = choices, eos, cancel, emit

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            for index, (choice, token) in enumerate(
                zip(self.choices, input_ids[:, -1].tolist(), strict=True)
            ):
                if choice.finish_reason is None:
                    choice.push(token, token in self.eos)
                    _report(self.emit, index, choice)
            done = [c.finish_reason is not None or self.cancel.is_set() for c in self.choices]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return Watcher


def _report(emit: Emit | None, index: int, choice: Choice) -> None:
    if emit is None:
        return
    text = choice.pending()
    if text:
        emit(Delta(index, text))
    if choice.finish_reason is not None:
        emit(Finished(index, choice.finish_reason))


def generate(
    target: _Target, request: GenerationRequest, cancel: threading.Event, emit: Emit | None = None
) -> Done:
    """Run one request to the end on the worker thread; with `emit`, report text as it is generated."""
    import torch

    tokenizer = target.tokenizer
    encoded = tokenizer.apply_chat_template(
        request.messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    prompt = list(encoded["input_ids"])
    wanted = request.max_tokens or 1
    if len(prompt) + wanted > target.context:
        raise EngineRequestError(
            f"This model's maximum context length is {target.context} tokens. However, you requested "
            f"{len(prompt) + wanted} tokens ({len(prompt)} in the messages, {wanted} in the completion). "
            "Please reduce the length of the messages or completion.",
            param="messages",
            code="context_length_exceeded",
        )
    max_tokens = request.max_tokens or target.context - len(prompt)
    if emit is not None:
        emit(Started(len(prompt)))
    config = target.model.generation_config
    eos = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_token_id
    eos_ids = {eos} if isinstance(eos, int) else set(eos or ())
    choices = [Choice(tokenizer, request.stop) for _ in range(request.n)]
    watcher = _watcher_class()(choices, eos_ids, cancel, emit)
    sampling: dict[str, Any] = {"do_sample": False}
    if request.temperature > 0:
        # top_k=0: OpenAI's sampling has no top-k, and transformers would otherwise default it to 50.
        sampling = {"do_sample": True, "temperature": request.temperature, "top_p": request.top_p, "top_k": 0}
    if request.seed is not None:
        torch.manual_seed(request.seed)  # global RNG, but only this thread generates, one request at a time
    inputs = torch.tensor([prompt], device=target.model.device)
    with torch.inference_mode(), target.scope():
        target.model.generate(
            input_ids=inputs,
            attention_mask=torch.ones_like(inputs),
            max_new_tokens=max_tokens,
            num_return_sequences=request.n,
            stopping_criteria=[watcher],
            pad_token_id=tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else min(eos_ids, default=None),
            **sampling,
        )
    for index, choice in enumerate(choices):
        if choice.finish_reason is None:
            choice.finish("length")
            _report(emit, index, choice)
    completion = sum(c.tokens for c in choices)
    usage = {
        "prompt_tokens": len(prompt),
        "completion_tokens": completion,
        "total_tokens": len(prompt) + completion,
    }
    return Done(usage, choices)


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
