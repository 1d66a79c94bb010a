"""The chat-completion parameters this engine honours, checked; what it cannot do is refused (400)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serving.errors import EngineRequestError

# Whoever needs these should use the vLLM engine: it implements them on the server side.
UNSUPPORTED = "This engine does not support `{}`; configure the vLLM engine for it."


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
