"""Generated tokens to text: incremental decoding and stop strings."""

from __future__ import annotations

from typing import Any


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
