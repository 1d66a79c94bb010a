"""Chat examples → pre-tokenized SFT rows (`input_ids`, `assistant_masks`) with ftapi's own mask.

TRL's `assistant_only_loss` relies on `{% generation %}` markers, swaps in its own template for
models it knows (ignoring `weight`) and fails inside the trainer for the rest. We render with the
model's own template (trainer.data.masking) and hand TRL rows it uses as they are: it builds the
labels from `assistant_masks` and renders nothing itself. The tokenizer is any Hugging Face
tokenizer; nothing here imports the ML stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainer.data.masking import Encode, Message, Render, assistant_spans, tokenize


def renderer(tokenizer: Any) -> Render:
    """The model's template as transformers renders it, exactly what chat at serving time uses."""

    def render(messages: list[Message], add_generation_prompt: bool) -> str:
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return str(text)

    return render


def encoder(tokenizer: Any) -> Encode:
    # Special tokens are part of the rendered text (bos included, where the template writes it).
    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    return encode


def stop_tokens(tokenizer: Any, generation_config: Any = None) -> list[str]:
    """Tokens generation ends at: the tokenizer's eos and the generation config's eos ids (Llama 3
    ends turns with <|eot_id|>, Gemma with <end_of_turn>, neither its tokenizer's eos)."""
    stops = [tokenizer.eos_token] if tokenizer.eos_token else []
    ids = getattr(generation_config, "eos_token_id", None)
    for token_id in [ids] if isinstance(ids, int) else list(ids or []):
        token = tokenizer.convert_ids_to_tokens(int(token_id))
        if isinstance(token, str) and token not in stops:
            stops.append(token)
    return stops


def _plain_content(message: Message) -> Message:
    """Text parts (`[{"type": "text", "text": ...}]`, valid in OpenAI's format) joined into the
    string most templates expect."""
    content = message.get("content")
    if isinstance(content, list):
        text = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        return {**message, "content": text}
    return message


class ChatEncoder:
    def __init__(self, tokenizer: Any, max_length: int, stops: Sequence[str] = ()) -> None:
        self.render = renderer(tokenizer)
        self.encode = encoder(tokenizer)
        self.max_length = max_length
        self.stops = tuple(stops)

    def __call__(self, messages: Sequence[Message]) -> tuple[list[int], list[int]]:
        """Token ids and assistant mask, truncated to max_length (the start is kept)."""
        plain = [_plain_content(m) for m in messages]
        ids, mask = tokenize(assistant_spans(plain, self.render, self.stops), self.encode)
        return ids[: self.max_length], mask[: self.max_length]

    def rows(self, conversations: Sequence[Sequence[Message]]) -> list[dict[str, list[int]]]:
        """Rows for TRL. A row truncation left without a trained token is dropped (it teaches
        nothing; TRL would drop it too)."""
        out = []
        for messages in conversations:
            ids, mask = self(messages)
            if 1 in mask:
                out.append({"input_ids": ids, "assistant_masks": mask})
        return out
