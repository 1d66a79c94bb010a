"""SIGTERM means "save and stop": cancel, pause and a dying worker all send it. During training the
current step finishes, a checkpoint is saved and reported, and the run exits; before or after
training there is nothing to save, so it exits at once."""

from __future__ import annotations

import signal
from types import FrameType

STOPPED_EXIT_CODE = 143  # 128 + SIGTERM, as a shell reports a process stopped by it


class Stopped(Exception):
    """Training stopped on request after saving a checkpoint."""


class StopRequest:
    def __init__(self) -> None:
        self.requested = False
        self.training = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.training:
            raise SystemExit(STOPPED_EXIT_CODE)
        self.requested = True

    def ask(self) -> None:
        """The API answered a report with "stop" (the job was paused or cancelled meanwhile): during
        training, stop as a SIGTERM would. Before or after training it changes nothing: the worker's
        SIGTERM, which follows, ends the run then."""
        if self.training:
            self.requested = True
