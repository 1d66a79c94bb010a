"""One generation on the worker thread, reporting text to the async side as events."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from serving.errors import EngineError, EngineRequestError
from serving.transformers_engine.models import Target
from serving.transformers_engine.request import GenerationRequest
from serving.transformers_engine.text import Choice


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
    target: Target, request: GenerationRequest, cancel: threading.Event, emit: Emit | None = None
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
