"""Child processes that must not outlive the process that started them (trainers, vLLM servers)."""

from __future__ import annotations

import ctypes
import signal
from collections.abc import Callable

_prctl: Callable[..., int] | None
try:  # resolved here, in the parent: the forked child of a threaded process must not import
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent() -> None:
    """`preexec_fn`: SIGTERM the child when its parent dies, even by SIGKILL, so no orphan trains on
    or keeps a port beside the process that replaces it. Runs between fork and exec; Linux only."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
