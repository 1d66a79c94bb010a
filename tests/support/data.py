"""Small, valid training data for tests."""

from __future__ import annotations

import json

LABELS = ("positive", "negative", "neutral")


def chat_example(i: int) -> dict[str, object]:
    return {
        "messages": [
            {"role": "system", "content": "Classify the sentiment. Answer with JSON."},
            {"role": "user", "content": f"Review number {i}: it was {'great' if i % 3 == 0 else 'fine'}."},
            {"role": "assistant", "content": json.dumps({"label": LABELS[i % 3]})},
        ]
    }


def chat_jsonl(n: int = 12) -> bytes:
    return b"".join(json.dumps(chat_example(i)).encode() + b"\n" for i in range(n))


def dpo_jsonl(n: int = 12) -> bytes:
    lines = []
    for i in range(n):
        lines.append(
            {
                "input": {"messages": [{"role": "user", "content": f"Say hi number {i}"}]},
                "preferred_output": [{"role": "assistant", "content": f"Hi {i}!"}],
                "non_preferred_output": [{"role": "assistant", "content": "No."}],
            }
        )
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


def big_jsonl(min_bytes: int) -> bytes:
    """A valid chat file of at least `min_bytes` (examples padded with filler text)."""
    filler = "lorem ipsum dolor sit amet " * 40
    out = bytearray()
    i = 0
    while len(out) < min_bytes:
        ex = chat_example(i)
        ex["messages"][1]["content"] += " " + filler  # type: ignore[index]
        out += json.dumps(ex).encode() + b"\n"
        i += 1
    return bytes(out)
