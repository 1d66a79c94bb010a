"""Run `python -m trainer run --spec` as the local executor does, on data put in local storage."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from storage.config import LocalStoreConfig
from storage.local import LocalBlobStore
from trainer.spec import BaseModelRef, Hyperparameters, JobSpec


@dataclass
class TrainerRun:
    done: subprocess.CompletedProcess[str]
    spec: JobSpec
    store: LocalBlobStore
    root: Path  # the blob store's directory
    events_path: Path


def run_trainer(
    tmp_path: Path,
    data: bytes,
    hyperparameters: Hyperparameters,
    *,
    job_id: str = "ftjob-test",
    logging_steps: int = 10,
    timeout: float = 900,
) -> TrainerRun:
    """One tiny-chat LoRA run (max_length 256) on `data` as the training file."""
    root = tmp_path / "blobs"
    store = LocalBlobStore(root)
    asyncio.run(store.put_bytes("files/p/train.jsonl", data))
    spec = JobSpec(
        job_id=job_id,
        base_model=BaseModelRef(id="tiny-chat", source="builtin:tiny-chat", max_length=256),
        hyperparameters=hyperparameters,
        storage=LocalStoreConfig(root=root),
        training_file_key="files/p/train.jsonl",
        output_prefix=f"jobs/p/{job_id}/",
        cache_dir=str(tmp_path / "cache"),
        logging_steps=logging_steps,
    )
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(spec.model_dump_json())
    events_path = tmp_path / "events.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "trainer", "run", "--spec", str(spec_path), "--events", str(events_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=timeout,
    )
    return TrainerRun(done, spec, store, root, events_path)
