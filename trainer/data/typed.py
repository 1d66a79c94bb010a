"""The fast path: msgspec Structs that decode a whole block of clean examples in one C call.

These types accept only what formats.py accepts (and sometimes less). They never produce a
problem themselves: whatever does not decode or pass `clean_*` is re-checked line by line by
formats.py, which alone words the problems. So a wrong call here can cost speed, never accuracy.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec
from msgspec import Struct

from trainer.data.lines import may_be_too_deep

# gc=False: decoded JSON cannot form reference cycles, and untracked instances spare the cyclic
# collector a pass per few hundred examples (it halved block decoding speed when tracked).
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_any_json: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


class TextPart(Struct, tag_field="type", tag="text", forbid_unknown_fields=True, gc=False):
    text: str


class ImagePart(Struct, tag_field="type", tag="image_url", gc=False):
    image_url: Any


class AudioPart(Struct, tag_field="type", tag="input_audio", gc=False):
    input_audio: Any


class FilePart(Struct, tag_field="type", tag="file", gc=False):
    file: Any


Part = TextPart | ImagePart | AudioPart | FilePart
Content = str | list[Part]


class Function(Struct, forbid_unknown_fields=True, gc=False):
    name: str
    arguments: str


class ToolCall(Struct, forbid_unknown_fields=True, gc=False):
    function: Function
    id: str = ""
    type: Literal["function"] = "function"


class SystemMessage(Struct, tag_field="role", tag="system", forbid_unknown_fields=True, gc=False):
    content: Content
    name: str | None = None


class DeveloperMessage(Struct, tag_field="role", tag="developer", forbid_unknown_fields=True, gc=False):
    content: Content
    name: str | None = None


class UserMessage(Struct, tag_field="role", tag="user", forbid_unknown_fields=True, gc=False):
    content: Content
    name: str | None = None


class AssistantMessage(Struct, tag_field="role", tag="assistant", forbid_unknown_fields=True, gc=False):
    content: Content | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: Function | None = None
    refusal: str | None = None
    weight: int = 1


class OutputMessage(Struct, tag_field="role", tag="assistant", forbid_unknown_fields=True, gc=False):
    content: Content | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: Function | None = None
    refusal: str | None = None


class ToolMessage(Struct, tag_field="role", tag="tool", forbid_unknown_fields=True, gc=False):
    content: Content
    tool_call_id: str
    name: str | None = None


class FunctionMessage(Struct, tag_field="role", tag="function", forbid_unknown_fields=True, gc=False):
    content: Content
    name: str


Message = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage
InputMessage = SystemMessage | DeveloperMessage | UserMessage | OutputMessage | ToolMessage | FunctionMessage


class ToolFunction(Struct, gc=False):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Struct, gc=False):
    function: ToolFunction
    type: Literal["function"] = "function"


class ChatExample(Struct, gc=False):
    messages: list[Message]
    tools: list[Tool] | None = None
    parallel_tool_calls: bool | None = None


class PreferenceInput(Struct, gc=False):
    messages: list[InputMessage]
    tools: list[Tool] | None = None
    parallel_tool_calls: bool | None = None


class PreferenceExample(Struct, gc=False):
    input: PreferenceInput
    preferred_output: list[OutputMessage]
    non_preferred_output: list[OutputMessage]


CHAT_BLOCK: msgspec.json.Decoder[list[ChatExample]] = msgspec.json.Decoder(list[ChatExample])
PREFERENCE_BLOCK: msgspec.json.Decoder[list[PreferenceExample]] = msgspec.json.Decoder(
    list[PreferenceExample]
)


def _text(content: Content | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(p.text for p in content if isinstance(p, TextPart))


def _clean_calls(calls: list[ToolCall], texts: list[str] | None) -> bool:
    if not calls:
        return False
    for call in calls:
        fn = call.function
        if not _NAME.match(fn.name):
            return False
        if may_be_too_deep(fn.arguments):
            return False  # formats.py measures the depth
        try:
            _any_json.decode(fn.arguments)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return False
        if texts is not None:
            texts += (fn.name, fn.arguments)
    return True


def _clean_tools(tools: list[Tool] | None) -> bool:
    return tools is None or all(_NAME.match(t.function.name) for t in tools)


# A clean example's facts, packed in one int (no allocation per example on the hot path).
TRAINABLE, HAS_SYSTEM, HAS_USER = 1, 2, 4
EMPTY_ASSISTANT = 8  # added once per empty assistant turn: `flags // EMPTY_ASSISTANT` counts them
NOT_CLEAN = -1


def _clean_messages(
    messages: list[Any],
    texts: list[str] | None,
    weights: bool,
    _assistant: type = AssistantMessage,
    _output: type = OutputMessage,
    _user: type = UserMessage,
    _system: tuple[type, ...] = (SystemMessage, DeveloperMessage),
) -> int:
    flags = 0
    for m in messages:
        cls = type(m)
        if cls is _assistant or cls is _output:
            calls = m.tool_calls
            if calls is not None and not _clean_calls(calls, texts):
                return NOT_CLEAN
            has_calls = calls is not None or m.function_call is not None
            content = m.content
            if content is None:
                if not has_calls:
                    return NOT_CLEAN
            else:
                text = content if type(content) is str else _text(content)
                if texts is not None:
                    texts.append(text)
                if not has_calls and not text.strip():
                    flags += EMPTY_ASSISTANT
            if weights:
                weight = m.weight
                if weight == 1:
                    flags |= TRAINABLE
                elif weight != 0:
                    return NOT_CLEAN
        else:
            if texts is not None:
                content = m.content
                texts.append(content if type(content) is str else _text(content))
            if cls is _user:
                flags |= HAS_USER
            elif cls in _system:
                flags |= HAS_SYSTEM
    return flags


def clean_chat(example: ChatExample, texts: list[str] | None) -> int:
    """The example's flags if it is certainly valid, else NOT_CLEAN (then formats.py decides)."""
    if not example.messages or (example.tools is not None and not _clean_tools(example.tools)):
        return NOT_CLEAN
    flags = _clean_messages(example.messages, texts, True)
    return flags if flags >= 0 and flags & TRAINABLE else NOT_CLEAN


def clean_preference(example: PreferenceExample, texts: list[str] | None) -> int:
    inp = example.input
    if not inp.messages or not _clean_tools(inp.tools):
        return NOT_CLEAN
    flags = _clean_messages(inp.messages, texts, False)
    for out in (example.preferred_output, example.non_preferred_output):
        if flags < 0 or len(out) != 1:
            return NOT_CLEAN
        more = _clean_messages(out, texts, False)
        if more < 0:
            return NOT_CLEAN
        empties = flags // EMPTY_ASSISTANT + more // EMPTY_ASSISTANT
        flags = ((flags | more) % EMPTY_ASSISTANT) + empties * EMPTY_ASSISTANT
    return flags


def n_messages(example: ChatExample | PreferenceExample) -> int:
    if isinstance(example, ChatExample):
        return len(example.messages)
    return len(example.input.messages) + 2
