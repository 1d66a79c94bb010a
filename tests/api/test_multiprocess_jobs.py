"""A job trained by two processes (FTAPI_TRAINER_PROCESSES=2: torchrun, DDP on gloo) through a real
`ftapi serve`, and what happens when one rank is killed with SIGKILL: the whole trainer ends, the job
is queued again and resumes from its last checkpoint, and no process of the killed run lingers."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import ADMIN_KEY
from tests.support.jobs import events_oldest_first, is_checkpoint, wait_for_event, wait_for_status
from tests.support.sentiment import sentiment_sets, to_jsonl
from tests.support.server import run_server

pytestmark = pytest.mark.slow


def trainer_processes(job_id: str) -> dict[int, str]:
    """PID → role ("launcher", "rank0", "rank1") of every process running this job's trainer."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours
            continue
        if not any(job_id.encode() in part for part in cmdline) or b"trainer" not in cmdline:
            continue
        rank = next((v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"LOCAL_RANK=")), None)
        found[int(entry.name)] = "launcher" if rank is None else f"rank{rank}"
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_killing_one_rank_ends_the_run_and_the_job_resumes(tmp_path: Path) -> None:
    env = {
        "FTAPI_API_KEY": ADMIN_KEY,
        "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.2",
        "FTAPI_TRAINER_PROCESSES": "2",
    }
    with run_server(tmp_path / "data", env) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=ADMIN_KEY, _strict_response_validation=True)
        train, _ = sentiment_sets()
        fid = client.files.create(file=("train.jsonl", to_jsonl(train)), purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(
            model="tiny-chat",
            training_file=fid,
            method={
                "type": "supervised",
                "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 8}},
            },
        )
        first = wait_for_event(client, job.id, is_checkpoint, timeout=300)
        step = int(first.split()[4])
        assert step == 8  # the global batch: 60 examples in 8 steps of 4 + 4, like one process
        procs = trainer_processes(job.id)
        assert sorted(procs.values()) == ["launcher", "rank0", "rank1"], procs
        victim = next(pid for pid, role in procs.items() if role == "rank1")
        os.kill(victim, signal.SIGKILL)

        requeued = wait_for_event(client, job.id, lambda m: "queued again (attempt 2 of 3)" in m, timeout=120)
        assert requeued.startswith("The trainer stopped (exit code ")
        # Nothing of the first run is left: torchrun stopped the other rank and exited.
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in procs):
            assert time.monotonic() < deadline, {p: r for p, r in procs.items() if alive(p)}
            time.sleep(0.2)

        done = wait_for_status(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=600)
        assert done.status == "succeeded", done.error
        messages = [e.message for e in events_oldest_first(client, job.id)]
        resumed = messages.index(f"Fine-tuning job resumed from the checkpoint at step {step}")
        steps_after = [int(m.split()[1].split("/")[0]) for m in messages[resumed:] if m.startswith("Step ")]
        assert steps_after and min(steps_after) > step  # continued, not restarted
        assert client.fine_tuning.jobs.checkpoints.list(job.id, limit=1).data[0].step_number == 16
        assert messages.count("Fine-tuning job started") == 1
        reply = client.chat.completions.create(
            model=done.fine_tuned_model or "",
            messages=[{"role": "user", "content": "hi"}],
            max_completion_tokens=4,
        )
        assert reply.choices[0].message.content is not None
        deadline = time.monotonic() + 30  # the second run exits by itself once it reported the end
        while trainer_processes(job.id):
            assert time.monotonic() < deadline, trainer_processes(job.id)
            time.sleep(0.2)
