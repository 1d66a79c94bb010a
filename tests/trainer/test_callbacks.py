"""Metrics events as OpenAI sends them: every one carries the step and the training metrics; each
epoch end is one, with that epoch's full validation folded in (never a row of validation alone).

Slow (a short real run on the CPU).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from storage.config import LocalStoreConfig
from storage.local import LocalBlobStore
from tests.support.sentiment import sentiment_sets, to_jsonl
from trainer.reporter import JsonlReporter
from trainer.spec import BaseModelRef, Hyperparameters, JobSpec
from trainer.stop import Stopped, StopRequest

pytestmark = pytest.mark.slow


def test_epoch_ends_that_are_not_logging_steps_still_carry_training_metrics(tmp_path: Path) -> None:
    from trainer.run import run

    train, test = sentiment_sets()
    root = tmp_path / "blobs"
    store = LocalBlobStore(root)
    asyncio.run(store.put_bytes("files/p/train.jsonl", to_jsonl(train)))
    asyncio.run(store.put_bytes("files/p/valid.jsonl", to_jsonl(test)))
    spec = JobSpec(
        job_id="ftjob-metrics",
        base_model=BaseModelRef(id="tiny-chat", source="builtin:tiny-chat", max_length=256),
        # 60 examples in batches of 7: 9 steps per epoch, so epoch ends (9, 18, 27) fall between
        # the logging steps (10, 20), as in the job that showed rows of validation alone.
        hyperparameters=Hyperparameters(n_epochs=3, batch_size=7, learning_rate=5e-3),
        storage=LocalStoreConfig(root=root),
        training_file_key="files/p/train.jsonl",
        validation_file_key="files/p/valid.jsonl",
        output_prefix="jobs/p/ftjob-metrics/",
        cache_dir=str(tmp_path / "cache"),
        logging_steps=10,
        eval_max_examples=2,
    )
    events_path = tmp_path / "events.jsonl"
    run(spec, JsonlReporter(events_path))

    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    metrics = [e["data"] for e in events if e["type"] == "metrics"]
    assert [m["step"] for m in metrics] == [9, 10, 18, 20, 27]
    for m in metrics:
        assert {"step", "total_steps", "train_loss", "train_mean_token_accuracy", "valid_loss"} <= set(m), m
        assert m["train_loss"] > 0 and 0 <= m["train_mean_token_accuracy"] <= 1
    with_full = [m["step"] for m in metrics if "full_valid_loss" in m]
    assert with_full == [9, 18, 27]
    assert all("full_valid_mean_token_accuracy" in m for m in metrics if "full_valid_loss" in m)
    # The checkpoint of each epoch carries that epoch's event's metrics, full validation included.
    checkpoints = [e["data"] for e in events if e["type"] == "checkpoint"]
    assert [c["step"] for c in checkpoints] == [9, 18, 27]
    assert all("full_valid_loss" in c["metrics"] and "train_loss" in c["metrics"] for c in checkpoints)


class PausedDuringSave(JsonlReporter):
    """The API's answer to the first checkpoint report is "stop": the job was paused while that
    (epoch-end) checkpoint was being saved, so its report landed after the pause. What HttpReporter
    does with that answer (tests/trainer/test_reporter.py) is done here directly."""

    def __init__(self, path: Path, stop: StopRequest) -> None:
        super().__init__(path)
        self.stop = stop
        self.answered = False

    def checkpoint(self, step: int, storage_prefix: str, metrics: dict[str, Any]) -> None:
        super().checkpoint(step, storage_prefix, metrics)
        if not self.answered:
            self.answered = True
            self.stop.ask()


def test_a_stop_that_comes_while_a_checkpoint_is_saved_is_served_by_that_checkpoint(tmp_path: Path) -> None:
    """The pause/resume flake: a stop noticed during a save was honoured only at the next step end,
    which saved a second checkpoint after the one the pause had been seen to save, and the resumed
    attempt started from that newer one."""
    from trainer.run import run

    train, _ = sentiment_sets(n_train=12)
    root = tmp_path / "blobs"
    asyncio.run(LocalBlobStore(root).put_bytes("files/p/train.jsonl", to_jsonl(train)))
    spec = JobSpec(
        job_id="ftjob-pause",
        base_model=BaseModelRef(id="tiny-chat", source="builtin:tiny-chat", max_length=128),
        hyperparameters=Hyperparameters(n_epochs=5, batch_size=4, learning_rate=5e-3),  # 3 steps an epoch
        storage=LocalStoreConfig(root=root),
        training_file_key="files/p/train.jsonl",
        output_prefix="jobs/p/ftjob-pause/",
        cache_dir=str(tmp_path / "cache"),
    )
    events_path = tmp_path / "events.jsonl"
    stop = StopRequest()
    with pytest.raises(Stopped):
        run(spec, PausedDuringSave(events_path, stop), stop)

    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert [e["data"]["step"] for e in events if e["type"] == "checkpoint"] == [3]
    assert max(e["data"]["step"] for e in events if e["type"] == "metrics") == 3
    assert not any(e["type"] == "complete" for e in events)
