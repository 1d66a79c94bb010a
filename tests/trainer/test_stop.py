"""A local trainer orphaned by its worker's death (SIGKILL: PR_SET_PDEATHSIG sends it SIGTERM) stops
within its grace even when its step does not end, instead of training on beside the attempt that
replaces it; the exit is its own, said in its log.

Slow: a real tiny-chat run, started by a stand-in worker exactly as a worker starts it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from storage.config import LocalStoreConfig
from storage.local import LocalBlobStore
from tests.support.sentiment import sentiment_sets, to_jsonl
from trainer.spec import BaseModelRef, Hyperparameters, JobSpec
from trainer.stop import ORPHANED_EXIT_CODE

pytestmark = pytest.mark.slow

GRACE_SECONDS = 3.0
# Liveness, not speed: the orphan must be gone within its grace plus this much. A trainer without
# the deadline is still there (its step never ends), however long one waits.
MARGIN_SECONDS = 45.0
REPO = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie that its new parent has not reaped yet does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def events_fifo(path: Path) -> int:
    """The trainer's events file as a FIFO, opened here for reading (and never closed early: the
    trainer's writes would fail instead of blocking)."""
    os.mkfifo(path)
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK)


def fill(path: Path) -> None:
    """Fill the FIFO's pipe to the last byte: from now on the trainer's next report blocks, inside
    a training step (or the save of its stop), so that step never ends, like a very slow one."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        for size in (4096, 1):  # whole pages, then the bytes left
            try:
                while True:
                    os.write(fd, b"\n" * size)
            except BlockingIOError:
                pass
    finally:
        os.close(fd)


def read_until_training(fd: int, trainer: int, log: Path, timeout: float = 300) -> list[dict[str, Any]]:
    """The events up to the first metrics event: training is under way."""
    deadline = time.monotonic() + timeout
    buffered, events = b"", []
    while not any(e["type"] == "metrics" for e in events):
        assert alive(trainer) and time.monotonic() < deadline, log.read_text()[-3000:]
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:  # a writer, nothing written yet
            chunk = b""
        if not chunk:
            time.sleep(0.2)
            continue
        *lines, buffered = (buffered + chunk).split(b"\n")
        events += [json.loads(line) for line in lines]
    return events


def test_an_orphaned_trainer_exits_within_its_grace_even_if_its_step_does_not_end(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    asyncio.run(LocalBlobStore(root).put_bytes("files/p/train.jsonl", to_jsonl(sentiment_sets()[0])))
    spec = JobSpec(
        job_id="ftjob-orphan",
        base_model=BaseModelRef(id="tiny-chat", source="builtin:tiny-chat", max_length=128),
        hyperparameters=Hyperparameters(n_epochs=50, batch_size=6, learning_rate=5e-3),  # 500 steps
        storage=LocalStoreConfig(root=root),
        training_file_key="files/p/train.jsonl",
        output_prefix="jobs/p/ftjob-orphan/",
        cache_dir=str(tmp_path / "cache"),
        logging_steps=1,
        stop_grace_seconds=GRACE_SECONDS,
    )
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(spec.model_dump_json())
    run_dir = tmp_path / "runs" / spec.job_id  # where LocalExecutor puts the run
    run_dir.mkdir(parents=True)
    events = run_dir / "spec.events.jsonl"  # where the trainer writes them by default, beside its spec
    events_fd = events_fifo(events)
    log = run_dir / "trainer.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.support.local_worker", str(spec_path), str(tmp_path / "runs")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    trainer = None
    try:
        assert worker.stdout is not None
        trainer = int(worker.stdout.readline())
        read_until_training(events_fd, trainer, log)
        fill(events)

        worker.kill()  # SIGKILL: no shutdown, the trainer is orphaned
        worker.wait()
        orphaned_at = time.monotonic()
        while alive(trainer) and time.monotonic() - orphaned_at < GRACE_SECONDS + MARGIN_SECONDS:
            time.sleep(0.5)
        output = log.read_text()
        assert not alive(trainer), output[-3000:]
        assert "the worker that started this run is gone" in output, output[-3000:]
        assert f"exiting (code {ORPHANED_EXIT_CODE})" in output, output[-3000:]
    finally:
        if trainer is not None and alive(trainer):
            os.killpg(trainer, signal.SIGKILL)  # its own session (start_new_session)
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        os.close(events_fd)
