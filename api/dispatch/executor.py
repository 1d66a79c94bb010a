"""The Executor contract: how the dispatcher runs a trainer somewhere (a local process, a container, a
Kubernetes Job). Nothing local-only leaks through: a run is an opaque handle string."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from trainer.spec import JobSpec

# The trainer image's tag as `make images` builds it: the default of FTAPI_TRAINER_IMAGE.
TRAINER_IMAGE = "ftapi-trainer:dev"


@dataclass(frozen=True)
class RunStatus:
    state: Literal["running", "exited", "lost"]  # lost: this executor no longer knows the run
    exit_code: int | None = None
    detail: str | None = None  # why it ended, for the job's error message (no secrets)
    output: str | None = None  # the tail of the run's output (secrets removed), when the executor keeps it


class ExecutorUnavailable(Exception):
    """The executor cannot reach what runs trainers (e.g. the container engine is down). Nothing is
    decided about the job: it stays queued (or running) until the executor answers again."""


class RunNotStarted(Exception):
    """This run cannot start as configured (e.g. its image does not exist); retrying will not help.
    The message says what to fix and becomes the job's error."""


class Executor(Protocol):
    def start(self, spec: JobSpec, env: dict[str, str]) -> str:
        """Start a trainer for `spec`; `env` carries secrets (the job token). Returns a handle.

        Raises RunNotStarted when the run cannot start as configured, ExecutorUnavailable when
        the executor's backend does not answer. Called in a worker thread (unless the executor sets
        `start_on_loop = True`)."""
        ...

    def poll(self, handle: str) -> RunStatus:
        """The run's state now, also for a handle another process started (when the executor can
        find it: a worker that restarts adopts its runs). Called in a worker thread: it may make a
        short remote call. May raise ExecutorUnavailable."""
        ...

    def cancel(self, handle: str, grace_seconds: float) -> None:
        """Ask the run to stop (SIGTERM or equivalent); force it after `grace_seconds`."""
        ...


@runtime_checkable
class ReadinessCheck(Protocol):
    """Optional: executors with a backend that can be down say so (GET /ready, the dispatcher)."""

    def ready(self) -> None:
        """Returns when runs can start; raises ExecutorUnavailable saying why not."""
        ...
