"""SIGTERM means "save and stop": cancel, pause and a dying worker all send it. During training the
current step finishes, a checkpoint is saved and reported, and the run exits; before or after
training there is nothing to save, so it exits at once.

A SIGTERM that finds the trainer orphaned (its parent, the local worker, died: PR_SET_PDEATHSIG sent
it) is the last word anyone will say to this run: no worker will force it after a grace as the
executor does on a cancel, so the trainer bounds its own stop. It gets `grace_seconds` to finish the
step and save, then exits hard: a slow step on a loaded machine must not keep an orphan training for
minutes beside the attempt that replaces it."""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

from trainer.spec import DEFAULT_STOP_GRACE_SECONDS

STOPPED_EXIT_CODE = 143  # 128 + SIGTERM, as a shell reports a process stopped by it
ORPHANED_EXIT_CODE = 124  # timeout(1)'s code: the orphan's grace ran out before it could stop


class Stopped(Exception):
    """Training stopped on request after saving a checkpoint."""


class ParentWatch:
    """Whether the process that started us (a local worker) is gone: the kernel re-parents an
    orphan. A container's trainer is PID 1, whose parent (0) never changes: never taken for one."""

    def __init__(self) -> None:
        self.pid = os.getppid()

    def gone(self) -> bool:
        return os.getppid() != self.pid


class StopRequest:
    def __init__(self, grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS) -> None:
        self.requested = False
        self.training = False
        self.grace_seconds = grace_seconds
        self._parent: ParentWatch | None = None  # who started us, as seen at install()
        self._deadline: threading.Timer | None = None

    def install(self) -> None:
        self._parent = ParentWatch()
        signal.signal(signal.SIGTERM, self._handle)

    def orphaned(self) -> bool:
        """Whether the parent seen at install() is gone (the kernel re-parents us before it sends
        PR_SET_PDEATHSIG's signal, so this holds by the time that SIGTERM is handled)."""
        return self._parent is not None and self._parent.gone()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.orphaned():
            self._start_deadline()  # also before the exit below: its clean-up may hang, too
        if not self.training:
            raise SystemExit(STOPPED_EXIT_CODE)
        self.requested = True

    def _start_deadline(self) -> None:
        if self._deadline is not None:
            return
        print(
            f"trainer: the worker that started this run is gone; stopping after this step, "
            f"or exiting in {self.grace_seconds:.0f} s at the latest",
            file=sys.stderr,
            flush=True,
        )
        # A thread, not a signal.alarm: the main thread may be stuck in a long step or a blocked
        # write, and the deadline must not wait for it to come back to the interpreter.
        self._deadline = threading.Timer(self.grace_seconds, self._expire)
        self._deadline.daemon = True
        self._deadline.start()

    def _expire(self) -> None:
        print(
            f"trainer: orphaned and not stopped within {self.grace_seconds:.0f} s; "
            f"exiting (code {ORPHANED_EXIT_CODE})",
            file=sys.stderr,
            flush=True,
        )
        os._exit(ORPHANED_EXIT_CODE)  # no clean-up: it is what was taking too long

    def ask(self) -> None:
        """The API answered a report with "stop" (the job was paused or cancelled meanwhile): during
        training, stop as a SIGTERM would. Before or after training it changes nothing: the worker's
        SIGTERM, which follows, ends the run then."""
        if self.training:
            self.requested = True
