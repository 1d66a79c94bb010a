"""Child processes that must not outlive the process that started them (trainers, vLLM servers)."""

from __future__ import annotations

import ctypes
import os
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


def parse_cpu_list(text: str) -> frozenset[int]:
    """A CPU list as taskset and cgroups write it ("0", "0-3,8"); ValueError when malformed or when it
    names CPUs this process may not use."""
    cpus: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and (not last.isdigit() or int(last) < int(first))):
            raise ValueError(f"{text!r} is not a CPU list such as '0' or '0-3,8'.")
        cpus.update(range(int(first), int(last or first) + 1))
    available = os.sched_getaffinity(0)
    if cpus - available:
        raise ValueError(
            f"CPUs {sorted(cpus - available)} are not available here (available: {sorted(available)})."
        )
    return frozenset(cpus)


def child_setup(cpus: frozenset[int] | None) -> None:
    """`preexec_fn` for a supervised server: die with the parent and, given `cpus`, run only there
    (every thread and process it starts inherits that affinity)."""
    die_with_parent()
    if cpus:
        os.sched_setaffinity(0, cpus)
