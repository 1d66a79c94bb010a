"""Data-quality statistics collected while validating: sizes, tokens, duplicates, empty turns."""

from __future__ import annotations

import math
from array import array
from dataclasses import asdict, dataclass
from typing import Any

# Per message and per example overheads of a chat template, as the OpenAI cookbook counts them.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_EXAMPLE = 3


@dataclass
class DataStats:
    n_examples: int = 0
    n_blank_lines: int = 0
    format: str | None = None
    tokens_counted: bool = False  # False: estimated as the JSON line's bytes / 4
    total_tokens: int = 0
    min_tokens: int = 0
    mean_tokens: float = 0.0
    p50_tokens: int = 0
    p95_tokens: int = 0
    max_tokens: int = 0
    max_tokens_limit: int | None = None
    n_over_limit: int = 0
    n_duplicates: int = 0  # examples whose line appeared before, byte for byte
    n_empty_assistant: int = 0
    n_without_system: int = 0
    n_without_user: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TokenLengths:
    """Per-example token counts in a compact array (4 bytes per example)."""

    def __init__(self) -> None:
        self.values = array("I")

    def add(self, n: int) -> None:
        self.values.append(n)

    def fill(self, stats: DataStats, limit: int | None) -> None:
        values = sorted(self.values)
        stats.max_tokens_limit = limit
        if not values:
            return
        stats.total_tokens = sum(values)
        stats.min_tokens, stats.max_tokens = values[0], values[-1]
        stats.mean_tokens = round(stats.total_tokens / len(values), 1)
        stats.p50_tokens = values[len(values) // 2]
        stats.p95_tokens = values[min(len(values) - 1, math.ceil(0.95 * len(values)) - 1)]
        if limit is not None:
            stats.n_over_limit = sum(1 for v in values if v > limit)
