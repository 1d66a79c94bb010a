"""Assistant-only loss masks for any chat template, computed by ftapi, not by the template.

A template is a renderer: (messages, add_generation_prompt) → text. Each trained assistant turn is
found by prefix renders: the conversation up to the turn with the generation prompt ends where the
answer starts, the conversation up to and including the turn ends after its end-of-turn token (and
whatever whitespace the template puts after it). The span between the two is what the model is
trained to produce; the trailing whitespace after the end-of-turn token is not (generation stops at
that token). Turns with `weight: 0` are not trained. This needs no `{% generation %}` markers, so
it works for every model's own template, and it honours `weight` whatever the template says.

It only works when a template is prefix-consistent: rendering the first n messages gives the start
of rendering them all. Templates that rewrite earlier turns once later ones exist (Qwen3 drops
reasoning from old turns) or refuse a role (Gemma refuses `system`) are found by `check_template`
on probe conversations, so the API refuses such a model before a job runs.

Torch-free: the API checks templates with it; the trainer tokenizes with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Message = dict[str, Any]
Render = Callable[[list[Message], bool], str]  # (messages, add_generation_prompt) → text
Encode = Callable[[str], list[int]]  # text → token ids, no special tokens added


class UntrainableTemplate(ValueError):
    """The chat template cannot be trained with an assistant-only loss (the message says why)."""


@dataclass(frozen=True)
class Rendered:
    text: str
    spans: list[tuple[int, int]]  # character ranges of the trained assistant turns, in order


def _render(render: Render, messages: list[Message], add_generation_prompt: bool) -> str:
    try:
        return render(messages, add_generation_prompt)
    except Exception as exc:  # a template's raise_exception, or any error inside the template
        raise UntrainableTemplate(f"the chat template cannot render this conversation: {exc}") from exc


def _trained(message: Message) -> bool:
    # `weight` is missing (None from datasets) or 1 on trained turns; 0 means "do not learn this".
    return message.get("role") == "assistant" and message.get("weight") != 0


def assistant_spans(messages: Sequence[Message], render: Render, stop_tokens: Sequence[str] = ()) -> Rendered:
    """The whole conversation's text and the character span of every trained assistant turn.

    Raises UntrainableTemplate when a prefix render is not a prefix of the whole rendering, or
    (with `stop_tokens`) when a trained turn does not end with one of them: the model would never
    learn to stop.
    """
    messages = list(messages)
    full = _render(render, messages, False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if not _trained(message):
            continue
        head = _render(render, messages[:i], True)
        turn = _render(render, messages[: i + 1], False)
        start = len(head)
        end = _turn_end(turn, start, stop_tokens, i)
        # Templates may close a rendering (Phi-3 appends eos to every one): only the turn itself,
        # up to its end-of-turn token, must be the same once later messages follow.
        if not (turn.startswith(head) and full[:end] == turn[:end]):
            raise UntrainableTemplate(
                "the chat template is not prefix-consistent: rendering a conversation up to an "
                f"assistant turn (message {i + 1}) does not give the start of the whole conversation's "
                "rendering, so the assistant's tokens cannot be located"
            )
        spans.append((start, end))
    return Rendered(full, spans)


def _turn_end(turn: str, start: int, stop_tokens: Sequence[str], index: int) -> int:
    """Where the assistant turn that starts at `start` ends: after its first end-of-turn token, or
    (stop tokens unknown) before the whitespace that ends the rendering."""
    if not stop_tokens:
        end = len(turn.rstrip())
    else:
        found = [turn.find(t, start) + len(t) for t in stop_tokens if turn.find(t, start) >= 0]
        if not found:
            raise UntrainableTemplate(
                "the chat template does not end an assistant turn with an end-of-turn token "
                f"({', '.join(stop_tokens)}), so a model trained on it would never learn to stop"
            )
        end = min(found)
    if end <= start:
        raise UntrainableTemplate(f"the chat template renders assistant message {index + 1} as nothing")
    return end


def tokenize(rendered: Rendered, encode: Encode) -> tuple[list[int], list[int]]:
    """Token ids and the assistant mask (1 = trained). Pieces are encoded separately at span
    boundaries, so the prompt before each answer is tokenized as a generation prompt would be and
    no token straddles a boundary."""
    ids: list[int] = []
    mask: list[int] = []
    pos = 0
    for start, end in rendered.spans:
        for piece, bit in ((rendered.text[pos:start], 0), (rendered.text[start:end], 1)):
            if piece:
                piece_ids = encode(piece)
                ids.extend(piece_ids)
                mask.extend([bit] * len(piece_ids))
        pos = end
    if pos < len(rendered.text):
        tail = encode(rendered.text[pos:])
        ids.extend(tail)
        mask.extend([0] * len(tail))
    return ids, mask


@dataclass(frozen=True)
class TemplateReport:
    system_problem: str | None = None  # why data with a system message cannot be trained, if it cannot

    @property
    def supports_system(self) -> bool:
        return self.system_problem is None


_PROBE_CHAT: list[Message] = [
    {"role": "user", "content": "What is two plus two?"},
    {"role": "assistant", "content": "Four."},
    {"role": "user", "content": "And three plus three?"},
    {"role": "assistant", "content": "Six."},
]
_PROBE_SYSTEM: Message = {"role": "system", "content": "You answer briefly."}


def check_template(render: Render, stop_tokens: Sequence[str] = ()) -> TemplateReport:
    """Whether a template can be trained, on multi-turn probe conversations (raises
    UntrainableTemplate with the reason if not). A template that fails only with a system message
    (Gemma's refuses one; Mistral's moves it into the last user turn) is trainable on data without
    one: the report says why not with."""
    assistant_spans(_PROBE_CHAT, render, stop_tokens)
    try:
        assistant_spans([_PROBE_SYSTEM, *_PROBE_CHAT], render, stop_tokens)
    except UntrainableTemplate as exc:
        return TemplateReport(system_problem=str(exc))
    return TemplateReport()
