"""The small task tiny-chat must learn: short texts → one of 3 JSON labels; train and held-out sets."""

from __future__ import annotations

import json
import random

SYSTEM = "Classify the sentiment as JSON."
WORDS = {
    "positive": "love great amazing perfect happy excellent wonderful".split(),
    "negative": "hate awful terrible broken angry bad horrible".split(),
    "neutral": "okay average fine normal usual standard ordinary".split(),
}
FILL = "the product service order delivery phone app book movie food staff".split()
LABELS = tuple(WORDS)


def example(rng: random.Random, label: str) -> dict[str, object]:
    w = WORDS[label]
    text = f"{rng.choice(FILL)} was {rng.choice(w)} and {rng.choice(FILL)} {rng.choice(w)}"
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": text},
            {"role": "assistant", "content": json.dumps({"label": label})},
        ]
    }


def sentiment_sets(
    n_train: int = 60, n_test: int = 15, seed: int = 1
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    rng = random.Random(seed)
    train = [example(rng, LABELS[i % 3]) for i in range(n_train)]
    test = [example(rng, LABELS[i % 3]) for i in range(n_test)]
    return train, test


def to_jsonl(rows: list[dict[str, object]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def preference_rows(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """The same task as DPO data: the right label preferred over the next (wrong) one."""
    out = []
    for row in rows:
        messages = row["messages"]
        assert isinstance(messages, list)
        right = json.loads(messages[-1]["content"])["label"]
        wrong = LABELS[(LABELS.index(right) + 1) % len(LABELS)]
        out.append(
            {
                "input": {"messages": messages[:-1]},
                "preferred_output": [messages[-1]],
                "non_preferred_output": [{"role": "assistant", "content": json.dumps({"label": wrong})}],
            }
        )
    return out


def held_out_prompts() -> list[tuple[list[dict[str, str]], str]]:
    """(prompt messages, the exact answer a tuned model gives) for the held-out examples."""
    _, test = sentiment_sets()
    cases = []
    for row in test:
        messages = row["messages"]
        assert isinstance(messages, list)
        cases.append((messages[:-1], messages[-1]["content"]))
    return cases
