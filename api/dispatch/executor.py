"""The Executor contract: how the dispatcher runs a trainer somewhere (a local process, a Kubernetes
Job). Nothing local-only leaks through: a run is an opaque handle string."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from trainer.spec import JobSpec


@dataclass(frozen=True)
class RunStatus:
    state: Literal["running", "exited", "lost"]  # lost: this executor no longer knows the run
    exit_code: int | None = None
    detail: str | None = None


class Executor(Protocol):
    def start(self, spec: JobSpec, env: dict[str, str]) -> str:
        """Start a trainer for `spec`; `env` carries secrets (the job token). Returns a handle."""
        ...

    def poll(self, handle: str) -> RunStatus:
        """The run's state now. Called in a worker thread: it may make a short remote call."""
        ...

    def cancel(self, handle: str, grace_seconds: float) -> None:
        """Ask the run to stop (SIGTERM or equivalent); force it after `grace_seconds`."""
        ...
