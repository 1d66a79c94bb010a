"""Two trainer processes for one job (torchrun, DDP on gloo: what runs on a CPU), against one.

Same global batch, so the same optimizer steps and nearly the same losses; only rank 0 reports,
every rank's RNG state lands in the checkpoint. Slow: two trainer runs, one of two processes.
"""

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
from trainer.distributed import per_device_batch_size
from trainer.spec import BaseModelRef, Hyperparameters, JobSpec


def write_spec(tmp_path: Path, processes: int, n_epochs: int = 2) -> tuple[Path, LocalBlobStore]:
    root = tmp_path / f"blobs-{processes}"
    store = LocalBlobStore(root)
    train, _ = sentiment_sets(n_train=36)  # 36 / 8: the last step of an epoch is short
    asyncio.run(store.put_bytes("files/p/train.jsonl", to_jsonl(train)))
    spec = JobSpec(
        job_id=f"ftjob-ddp{processes}",
        base_model=BaseModelRef(id="tiny-chat", source="builtin:tiny-chat", max_length=128),
        mode="full",  # full fine-tuning at lr 1e-3: the loss moves, so "close" means something
        hyperparameters=Hyperparameters(n_epochs=n_epochs, batch_size=8, learning_rate=1e-3),
        storage=LocalStoreConfig(root=root),
        training_file_key="files/p/train.jsonl",
        output_prefix="jobs/p/x/",
        cache_dir=str(tmp_path.parent / "cache"),
        processes=processes,
    )
    spec_path = tmp_path / f"spec-{processes}.json"
    spec_path.write_text(spec.model_dump_json())
    return spec_path, store


def trainer_command(spec_path: Path) -> list[str]:
    events = spec_path.with_suffix(".events.jsonl")
    return [sys.executable, "-m", "trainer", "run", "--spec", str(spec_path), "--events", str(events)]


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def read_events(spec_path: Path) -> list[dict[str, Any]]:
    path = spec_path.with_suffix(".events.jsonl")
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def run_trainer(tmp_path: Path, processes: int) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    spec_path, store = write_spec(tmp_path, processes)
    done = subprocess.run(trainer_command(spec_path), capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = [line for line in done.stdout.splitlines() if line.startswith('{"')]
    assert len(summaries) == 1  # rank 0's alone
    return (
        json.loads(summaries[0]),
        read_events(spec_path),
        asyncio.run(store.list_keys("jobs/p/x/checkpoints/")),
    )


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path: Path) -> None:
    one, one_events, _ = run_trainer(tmp_path, 1)
    two, two_events, two_keys = run_trainer(tmp_path, 2)

    assert one["steps"] == two["steps"] == 2 * 5
    losses = {
        n: [e["data"]["train_loss"] for e in ev if e["type"] == "metrics"]
        for n, ev in ((1, one_events), (2, two_events))
    }
    assert len(losses[1]) == len(losses[2]) == 10
    assert losses[2][-1] < losses[2][0] - 1  # it trained
    assert abs(losses[2][-1] - losses[1][-1]) / losses[1][-1] < 0.05
    assert abs(two["train_loss"] - one["train_loss"]) / one["train_loss"] < 0.05
    assert one["trained_tokens"] == two["trained_tokens"]

    # Rank 0 speaks for the job: one start, one checkpoint per epoch, one completion.
    kinds = [e["type"] for e in two_events]
    assert [e["message"] for e in two_events if e["type"] == "message"] == ["Fine-tuning job started"]
    assert kinds.count("checkpoint") == 2 and kinds.count("complete") == 1 and kinds[-1] == "complete"
    for step in (5, 10):
        names = {k.rsplit("/", 1)[1] for k in two_keys if f"/step-{step}/" in k}
        assert {"model.safetensors", "optimizer.pt", "rng_state_0.pth", "rng_state_1.pth"} <= names


@pytest.mark.slow
def test_a_stop_reaches_both_ranks_at_the_same_step(tmp_path: Path) -> None:
    """SIGTERM (cancel, pause) as the local executor sends it, to the launcher's process group:
    both ranks stop after the same step, rank 0 saves and reports that checkpoint, and all exit."""
    spec_path, store = write_spec(tmp_path, 2, n_epochs=20)
    proc = subprocess.Popen(
        trainer_command(spec_path),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not any(e["type"] == "checkpoint" for e in read_events(spec_path)):
            assert proc.poll() is None and time.monotonic() < deadline, (
                proc.stderr.read() if proc.stderr else ""
            )
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)  # torchrun's own grace is 30 s: well before it, the ranks are done
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    events = read_events(spec_path)
    checkpoints = [e["data"]["step"] for e in events if e["type"] == "checkpoint"]
    # The stop's step may be reported twice: the Trainer saves again at the end of the epoch it
    # left (save_strategy "epoch"), which the API takes as the same checkpoint.
    assert checkpoints[0] == 5 and len(set(checkpoints)) == 2 and 5 < checkpoints[-1] < 100
    assert not any(e["type"] == "complete" for e in events)
    names = {
        k.rsplit("/", 1)[1]
        for k in asyncio.run(store.list_keys(f"jobs/p/x/checkpoints/step-{checkpoints[1]}/"))
    }
    assert {"model.safetensors", "optimizer.pt", "rng_state_0.pth", "rng_state_1.pth"} <= names


def ranks_of(launcher: int) -> list[int]:
    children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    return [int(pid) for pid in children]


@pytest.mark.slow
def test_killing_rank_0_ends_the_whole_run(tmp_path: Path) -> None:
    """The reporting rank dies (SIGKILL): the other rank and torchrun end too, with an error, so the
    executor sees a failed run (the API then resumes the job; tests/api/test_multiprocess_jobs.py)."""
    spec_path, _ = write_spec(tmp_path, 2, n_epochs=20)
    proc = subprocess.Popen(
        trainer_command(spec_path),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not any(e["type"] == "checkpoint" for e in read_events(spec_path)):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        ranks = ranks_of(proc.pid)
        assert len(ranks) == 2
        rank0 = next(
            pid for pid in ranks if b"LOCAL_RANK=0" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        )
        os.kill(rank0, signal.SIGKILL)
        assert proc.wait(timeout=60) not in (0, 143)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    for pid in ranks:
        assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    assert not any(e["type"] == "complete" for e in read_events(spec_path))


@pytest.mark.parametrize(("batch", "processes", "per_device"), [(8, 1, 8), (8, 2, 4), (9, 2, 5), (1, 4, 1)])
def test_the_batch_size_is_global(batch: int, processes: int, per_device: int) -> None:
    assert per_device_batch_size(batch, processes) == per_device


def test_fsdp_for_full_fine_tuning_makes_a_valid_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Configuration only: FSDP needs GPUs to be worth running, and none is here."""
    from trl import SFTConfig

    from trainer.distributed import training_arguments

    spec_path, _ = write_spec(tmp_path, 2)
    spec = JobSpec.model_validate_json(spec_path.read_text()).model_copy(update={"fsdp": True})
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = training_arguments(spec, 8, on_cuda=True)
    lora = training_arguments(spec.model_copy(update={"mode": "lora"}), 8, on_cuda=True)
    monkeypatch.delenv("WORLD_SIZE")
    assert args["ddp_backend"] == "nccl" and args["per_device_train_batch_size"] == 4
    assert "fsdp" not in lora and lora["ddp_find_unused_parameters"] is False  # LoRA: plain DDP
    import torch.distributed as dist

    from tests.support.moto_server import free_port

    # The Trainer's FSDP set-up wants a process group: a one-process gloo group stands in.
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        config = SFTConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, **args)
    finally:
        dist.destroy_process_group()
    assert config.fsdp and config.fsdp_config["version"] == 2
    assert config.fsdp_config["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
