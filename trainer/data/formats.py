"""The rules of each training-data format, applied to one decoded example.

chat (method `supervised`): {"messages": [...], "tools"?: [...], "parallel_tool_calls"?: bool}
preference (method `dpo`): {"input": {"messages": [...], ...}, "preferred_output": [assistant],
"non_preferred_output": [assistant]} (`*_completion` accepted as aliases).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from trainer.data.lines import JsonTooDeep, decode_json, iter_records

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_MESSAGE_KEYS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "function_call", "weight", "refusal"},
    "tool": {"role", "content", "tool_call_id", "name"},
    "function": {"role", "content", "name"},
}
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_json_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


@dataclass
class ExampleInfo:
    """What one example contributes: its problems and what the statistics need."""

    problems: list[tuple[int | None, str, str]] = field(default_factory=list)  # (message, code, reason)
    texts: list[str] = field(default_factory=list)
    n_messages: int = 0
    n_empty_assistant: int = 0
    has_system: bool = False
    has_user: bool = False

    def add(self, message: int | None, code: str, reason: str) -> None:
        self.problems.append((message, code, reason))


def detect_format(obj: dict[str, Any]) -> str | None:
    if "messages" in obj:
        return "chat"
    if "input" in obj or "preferred_output" in obj or "preferred_completion" in obj:
        return "preference"
    return None


def _content_text(content: Any) -> str | None:
    """The text of a content value (a string or a list of parts), or None if malformed."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                return None
            if part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    return None
                out.append(part["text"])
            elif part["type"] not in ("image_url", "input_audio", "file"):
                return None
        return "".join(out)
    return None


def _check_tool_calls(info: ExampleInfo, index: int, calls: Any) -> None:
    if not isinstance(calls, list) or not calls:
        info.add(index, "invalid_tool_call", "tool_calls must be a non-empty list")
        return
    for call in calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(fn, dict):
            info.add(index, "invalid_tool_call", "each tool call needs a 'function' object")
            return
        if call.get("type", "function") != "function" or not isinstance(call.get("id", ""), str):
            info.add(index, "invalid_tool_call", "a tool call needs type 'function' and a string id")
            return
        name, args = fn.get("name"), fn.get("arguments")
        if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
            info.add(
                index,
                "invalid_tool_call",
                "a tool call's function needs a name of 1-64 letters, digits, _ or -",
            )
            return
        if not isinstance(args, str):
            info.add(index, "invalid_tool_call", "a tool call's function.arguments must be a JSON string")
            return
        try:
            decode_json(args, _json_decoder)
        except (msgspec.DecodeError, UnicodeDecodeError, JsonTooDeep):
            info.add(index, "invalid_tool_call", "a tool call's function.arguments is not valid JSON")
            return
        info.texts.append(name)
        info.texts.append(args)


def check_message(info: ExampleInfo, index: int, msg: Any, *, allow_weight: bool = True) -> bool:
    """Check one message; returns True when it is a trainable assistant message."""
    if not isinstance(msg, dict):
        info.add(index, "invalid_message", "a message must be an object")
        return False
    role = msg.get("role")
    if role is None:
        info.add(index, "missing_role", "Discriminator 'role' is missing in value")
        return False
    if role not in ROLES:
        info.add(index, "unknown_role", f"role {role!r} is not one of {', '.join(ROLES)}")
        return False
    info.n_messages += 1
    extra = set(msg) - _MESSAGE_KEYS[role] - {"weight"}  # a misplaced weight has its own problem below
    if extra:
        info.add(index, "unknown_key", f"unexpected key {sorted(extra)[0]!r} in a {role} message")
    if role in ("system", "developer"):
        info.has_system = True
    elif role == "user":
        info.has_user = True
    content = msg.get("content")
    if role == "assistant":
        has_calls = msg.get("tool_calls") is not None or msg.get("function_call") is not None
        if msg.get("tool_calls") is not None:
            _check_tool_calls(info, index, msg["tool_calls"])
        if content is None:
            if not has_calls:
                info.add(index, "missing_content", "an assistant message needs content or tool_calls")
        else:
            text = _content_text(content)
            if text is None:
                info.add(index, "invalid_content", "content must be a string or a list of content parts")
            else:
                info.texts.append(text)
                if not text.strip() and not has_calls:
                    info.n_empty_assistant += 1
        weight = msg.get("weight", 1)
        if "weight" in msg:
            if not allow_weight:
                info.add(index, "invalid_weight", "weight is not allowed here")
            elif type(weight) is not int or weight not in (0, 1):
                info.add(index, "invalid_weight", "weight must be 0 or 1")
                return False
        return bool(weight != 0)
    if "weight" in msg:
        info.add(index, "invalid_weight", f"weight is only allowed on assistant messages, not {role}")
    text = _content_text(content)
    if text is None:
        info.add(index, "invalid_content", "content must be a string or a list of content parts")
    else:
        info.texts.append(text)
    if role == "tool" and not isinstance(msg.get("tool_call_id"), str):
        info.add(index, "missing_tool_call_id", "a tool message needs a string tool_call_id")
    if role == "function" and not isinstance(msg.get("name"), str):
        info.add(index, "invalid_function_message", "a function message needs a name")
    return False


def _check_tools(info: ExampleInfo, obj: dict[str, Any]) -> None:
    tools = obj.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            info.add(None, "invalid_tools", "tools must be a list")
        else:
            for tool in tools:
                fn = tool.get("function") if isinstance(tool, dict) else None
                if not isinstance(fn, dict) or not _FUNCTION_NAME.match(str(fn.get("name", ""))):
                    info.add(
                        None,
                        "invalid_tools",
                        "each tool needs type 'function' and a function with a valid name",
                    )
                    break
                if "parameters" in fn and not isinstance(fn["parameters"], dict):
                    info.add(None, "invalid_tools", "a tool's parameters must be a JSON Schema object")
                    break
    if "parallel_tool_calls" in obj and not isinstance(obj["parallel_tool_calls"], bool):
        info.add(None, "invalid_tools", "parallel_tool_calls must be a boolean")


def check_chat(obj: dict[str, Any]) -> ExampleInfo:
    info = ExampleInfo()
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        info.add(None, "missing_messages", "messages must be a non-empty list")
        return info
    _check_tools(info, obj)
    trainable = False
    for i, msg in enumerate(messages, 1):
        trainable |= check_message(info, i, msg)
    if not info.problems and not trainable:
        # TRL silently drops such examples, so refuse them here.
        info.add(
            None, "no_trainable_assistant", "the example has no assistant message to train on (weight != 0)"
        )
    return info


def check_preference(obj: dict[str, Any]) -> ExampleInfo:
    info = ExampleInfo()
    inp = obj.get("input")
    messages = inp.get("messages") if isinstance(inp, dict) else None
    if not isinstance(messages, list) or not messages:
        info.add(None, "missing_messages", "input.messages must be a non-empty list")
    else:
        _check_tools(info, inp)  # type: ignore[arg-type]
        for i, msg in enumerate(messages, 1):
            check_message(info, i, msg, allow_weight=False)
    for name in ("preferred_output", "non_preferred_output"):
        alias = name.replace("_output", "_completion")
        out = obj.get(name, obj.get(alias))
        if not isinstance(out, list) or len(out) != 1:
            info.add(None, "invalid_dpo_output", f"{name} must be a list with exactly one assistant message")
            continue
        msg = out[0]
        if not isinstance(msg, dict) or msg.get("role") != "assistant":
            info.add(None, "invalid_dpo_output", f"{name} must hold an assistant message")
            continue
        sub = ExampleInfo()
        check_message(sub, 1, msg, allow_weight=False)
        info.problems += [(None, code, f"{name}: {reason}") for _, code, reason in sub.problems]
        info.texts += sub.texts
        info.n_empty_assistant += sub.n_empty_assistant
    return info


def _text_messages(messages: Any) -> Any:
    if not isinstance(messages, list):
        return messages
    out = []
    for msg in messages:
        if isinstance(msg, dict) and isinstance(msg.get("content"), list):
            msg = {**msg, "content": _content_text(msg["content"])}
        out.append(msg)
    return out


def with_text_content(example: dict[str, Any]) -> dict[str, Any]:
    """The example with each list of content parts replaced by its text, as the model is trained on
    it. A column of Arrow (Dataset.from_list) cannot hold strings beside lists, and chat templates
    expect strings; non-text parts carry nothing a text model trains on."""
    out = dict(example)
    if "messages" in out:
        out["messages"] = _text_messages(out["messages"])
    if isinstance(out.get("input"), dict):
        out["input"] = {**out["input"], "messages": _text_messages(out["input"].get("messages"))}
    for key in ("preferred_output", "non_preferred_output"):
        for name in (key, key.replace("_output", "_completion")):
            if name in out:
                out[name] = _text_messages(out[name])
    return out


def read_examples(path: str | Path) -> list[dict[str, Any]]:
    """A validated file's examples as the trainer uses them (see lines.iter_records)."""
    return [with_text_content(record) for record in iter_records(path)]
