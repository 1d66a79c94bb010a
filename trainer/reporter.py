"""Where a run's events go: the API over HTTP with the per-job token (`FTAPI_JOB_TOKEN`), or a JSONL
file when the trainer runs by hand. Stdlib only: the trainer image needs nothing of the API."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from trainer.stop import ParentWatch


class Reporter(Protocol):
    def emit(self, kind: str, message: str, data: dict[str, Any] | None = None, level: str = "info") -> None:
        """Record one event: kind is "message" or "metrics"."""
        ...

    def checkpoint(self, step: int, storage_prefix: str, metrics: dict[str, Any]) -> None:
        """A checkpoint of `step` is in storage under `storage_prefix`: the job can resume from it."""
        ...

    def complete(self, summary: dict[str, Any]) -> None:
        """The run succeeded and its outputs are in storage."""
        ...


class SilentReporter:
    """What every rank but rank 0 reports through when several processes train one job: nothing.
    Rank 0 speaks for the job (its metrics are already averaged over the ranks by the Trainer)."""

    def emit(self, kind: str, message: str, data: dict[str, Any] | None = None, level: str = "info") -> None:
        pass

    def checkpoint(self, step: int, storage_prefix: str, metrics: dict[str, Any]) -> None:
        pass

    def complete(self, summary: dict[str, Any]) -> None:
        pass


class ReportRejected(Exception):
    """The API refused a report (the job was cancelled, say): retrying cannot help, the run stops."""


class JsonlReporter:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"time": time.time(), **record}) + "\n")

    def emit(self, kind: str, message: str, data: dict[str, Any] | None = None, level: str = "info") -> None:
        self._write({"type": kind, "level": level, "message": message, "data": data})

    def checkpoint(self, step: int, storage_prefix: str, metrics: dict[str, Any]) -> None:
        data = {"step": step, "storage_prefix": storage_prefix, "metrics": metrics}
        self._write({"type": "checkpoint", "level": "info", "message": f"checkpoint {step}", "data": data})

    def complete(self, summary: dict[str, Any]) -> None:
        self._write({"type": "complete", "level": "info", "message": "completed", "data": summary})


COMPLETE_TIMEOUT_SECONDS = 900
# How long a report waits for the API to come back. A trainer outlives the process that started it
# (a container, a Kubernetes Job), so an API or worker restart must not end it: the run waits (its
# training pauses at the next report) and goes on once the API answers again.
UNREACHABLE_API_SECONDS = 600.0
_MAX_BACKOFF_SECONDS = 10.0


def _answer(body: bytes) -> dict[str, Any]:
    # An API from before answers were sent replies 204 with no body: no answer, nothing to follow.
    try:
        answer = json.loads(body) if body else {}
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


class HttpReporter:
    """Posts to the API's internal endpoints for this job. A report the API refuses (4xx) stops the
    run; one it cannot take now (connection refused, 5xx) is retried until `retry_seconds` pass."""

    def __init__(
        self,
        base_url: str,
        job_id: str,
        token: str | None = None,
        retry_seconds: float = UNREACHABLE_API_SECONDS,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/internal/v1/fine_tuning/jobs/{job_id}"
        self.token = token or os.environ["FTAPI_JOB_TOKEN"]
        self.retry_seconds = retry_seconds
        # Called when the API answers an event or checkpoint with `"stop": true` (the job is no
        # longer running): the run stops at once instead of when the worker's SIGTERM arrives.
        self.on_stop = on_stop
        # A local trainer is its worker's child and is stopped when the worker dies: once orphaned,
        # nobody will read its reports, so it does not wait for them.
        self._parent = ParentWatch()

    def _post(self, path: str, body: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        """The API's answer (a JSON object; empty when it sent none)."""
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method="POST",
        )
        deadline = time.monotonic() + self.retry_seconds
        backoff = 0.5
        warned = False
        while True:
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    if warned:
                        print(f"ftapi: the API answers again ({self.url})", file=sys.stderr, flush=True)
                    return _answer(response.read())
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    raise ReportRejected(f"{exc.code}: {exc.read()[:500]!r}") from exc
                failure: OSError = exc
            except OSError as exc:
                failure = exc
            if time.monotonic() + backoff > deadline or self._parent.gone():
                raise failure
            if not warned:
                # On the trainer's output (kept with the job): why the run stands still.
                print(
                    f"ftapi: the API does not answer ({self.url}{path}: {failure}); "
                    f"retrying for up to {self.retry_seconds:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
                warned = True
            time.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)

    def _follow(self, answer: dict[str, Any]) -> None:
        if answer.get("stop") is True and self.on_stop is not None:
            self.on_stop()

    def emit(self, kind: str, message: str, data: dict[str, Any] | None = None, level: str = "info") -> None:
        self._follow(self._post("/events", {"type": kind, "level": level, "message": message, "data": data}))

    def checkpoint(self, step: int, storage_prefix: str, metrics: dict[str, Any]) -> None:
        body = {"step": step, "storage_prefix": storage_prefix, "metrics": metrics}
        self._follow(self._post("/checkpoints", body))

    def complete(self, summary: dict[str, Any]) -> None:
        # The API loads the model into its engine and probes it before answering: minutes for a
        # large model on a cold engine. A timeout here would retry a completion already under way.
        self._post("/complete", summary, timeout=COMPLETE_TIMEOUT_SECONDS)
