"""A problem found in training data, located by line, example and message (all 1-based)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    line: int
    example: int | None
    message_index: int | None
    code: str
    message: str

    @property
    def kind(self) -> str:
        return self.code

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
