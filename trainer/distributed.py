"""Several trainer processes for one job (one per GPU): launched by torchrun, DDP (or FSDP) through
the Trainer, and only rank 0 speaks for the job.

`python -m trainer run` starts as one process wherever an executor runs it. When the spec asks for
more (`processes`, set by the executor from the GPUs it gives the job), it replaces itself with
`torchrun --standalone --nproc-per-node N` running the same command, so the executor's handle (the
PID, the container's PID 1) is torchrun, which forwards SIGTERM to every rank and, when one rank
dies, stops the others and exits non-zero: the job is then queued again and resumes from its last
checkpoint like any crashed trainer (`--max-restarts 0`: a restart within torchrun would not).

Ranks agree on a stop (cancel, pause) at a step end, so that all save the same checkpoint; rank 0
reports and uploads, the others upload only their own RNG state into the same checkpoint.
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
import sys
from typing import Any

from trainer.spec import JobSpec

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def wanted_processes(spec: JobSpec) -> int:
    """How many processes this job trains with; 0 in the spec means one per visible CUDA device."""
    if spec.processes:
        return spec.processes
    import torch

    return max(1, torch.cuda.device_count())


def relaunch_under_torchrun(spec: JobSpec, argv: list[str]) -> None:
    """Replace this process with torchrun running `python -m trainer <argv>` N times, unless N is 1
    or this already is one of torchrun's ranks. Returns only when nothing is to be done."""
    if "LOCAL_RANK" in os.environ:
        _die_with_launcher()
        return
    n = wanted_processes(spec)
    if n <= 1:
        return
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # one machine: a local rendezvous on a free port
        f"--nproc-per-node={n}",
        "--max-restarts=0",
        "-m",
        "trainer",
        *argv,
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)


def _die_with_launcher() -> None:
    """torchrun starts each rank in a session of its own: if torchrun is killed (SIGKILL after a
    cancel's grace), its ranks must not train on as orphans."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the launcher died before the line above
        os._exit(1)


def per_device_batch_size(batch_size: int, processes: int) -> int:
    """The job's batch size is the global one: split over the processes (rounded up when it does
    not divide, so no process gets an empty share)."""
    return max(1, math.ceil(batch_size / max(1, processes)))


def training_arguments(spec: JobSpec, batch_size: int, on_cuda: bool) -> dict[str, Any]:
    """The TrainingArguments that depend on the number of processes."""
    n = world_size()
    args: dict[str, Any] = {"per_device_train_batch_size": per_device_batch_size(batch_size, n)}
    if n > 1:
        args["ddp_backend"] = "nccl" if on_cuda else "gloo"
        if spec.fsdp and spec.mode == "full":
            # Full fine-tuning of a model too big for one GPU: shard parameters, gradients and
            # optimizer state (written for GPUs; not run on this project's CPU-only machines).
            args["fsdp"] = True
            args["fsdp_config"] = {
                "version": 2,
                "reshard_after_forward": True,  # FSDP2's full_shard
                "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                "state_dict_type": "FULL_STATE_DICT",
                "cpu_ram_efficient_loading": True,
            }
        else:
            args["ddp_find_unused_parameters"] = False
    return args


def agree(flag: bool) -> bool:
    """True on every rank when it is True on any (a cheap all-reduce once per step)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
