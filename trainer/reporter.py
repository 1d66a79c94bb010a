"""Where a run's events go. The API side (next slice) gets an HTTP reporter with a per-job token;
tests and `--events FILE` use the JSONL reporter."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol


class Reporter(Protocol):
    def emit(self, kind: str, message: str, data: dict[str, Any] | None = None, level: str = "info") -> None:
        """Record one event: kind is "message" or "metrics"."""
        ...


class JsonlReporter:
    def __init__(self, path: Path) -> None:
        self.path = path

    def emit(self, kind: str, message: str, data: dict[str, Any] | None = None, level: str = "info") -> None:
        record = {"time": time.time(), "type": kind, "level": level, "message": message, "data": data}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
