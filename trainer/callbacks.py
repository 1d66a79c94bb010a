"""The TrainerCallback that reports a run as OpenAI does: a metrics event per logging step and per
epoch end (with a validation batch; the epoch's full validation folded into its event), a checkpoint
per save, and a prompt stop on SIGTERM."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from trainer.distributed import agree
from trainer.evaluate import Encoded, token_metrics
from trainer.reporter import Reporter
from trainer.stop import StopRequest

CheckpointHandler = Callable[[int, Path, dict[str, Any]], None]


class Validation:
    """The encoded validation set: a rotating batch per logging step, all of it at epoch ends."""

    def __init__(self, tokenizer: Any, encoded: list[Encoded], batch_size: int) -> None:
        self.tokenizer = tokenizer
        self.encoded = encoded
        self.batch_size = batch_size
        self._next = 0

    def batch_metrics(self, model: Any) -> dict[str, float]:
        n = min(self.batch_size, len(self.encoded))
        batch = [self.encoded[(self._next + i) % len(self.encoded)] for i in range(n)]
        self._next = (self._next + n) % len(self.encoded)
        m = token_metrics(model, self.tokenizer, batch, self.batch_size)
        return {"valid_loss": m.loss, "valid_mean_token_accuracy": m.mean_token_accuracy}

    def full_metrics(self, model: Any) -> dict[str, float]:
        m = token_metrics(model, self.tokenizer, self.encoded, self.batch_size)
        return {"full_valid_loss": m.loss, "full_valid_mean_token_accuracy": m.mean_token_accuracy}


def _message(row: dict[str, Any]) -> str:
    text = f"Step {row['step']}/{row['total_steps']}: "
    parts = []
    if "train_loss" in row:
        parts.append(f"training loss={row['train_loss']:.2f}")
    if "valid_loss" in row:
        parts.append(f"validation loss={row['valid_loss']:.2f}")
    if "full_valid_loss" in row:
        parts.append(f"full validation loss={row['full_valid_loss']:.2f}")
    return text + ", ".join(parts)


class ProgressCallback(TrainerCallback):  # type: ignore[misc]
    """Every metrics event carries `step`, `train_loss` and `train_mean_token_accuracy`, as at
    OpenAI: each epoch end is a logging step (whatever `logging_steps` says), and the full-validation
    metrics of that epoch are folded into its event rather than sent alone.

    A logged row waits until the step is over (the next step begins, a checkpoint is saved, training
    ends): the epoch end, which may add the full validation to it, comes after the step's log."""

    def __init__(
        self,
        reporter: Reporter,
        stop: StopRequest,
        on_checkpoint: CheckpointHandler,
        validation: Validation | None = None,
    ) -> None:
        self.reporter = reporter
        self.stop = stop
        self.on_checkpoint = on_checkpoint
        self.validation = validation
        self.last_metrics: dict[str, Any] = {}
        self._pending: dict[str, Any] | None = None  # the logged row of the current step
        self._full: tuple[int, dict[str, float]] | None = None  # an epoch's full validation, awaiting its log

    def _emit(self, row: dict[str, Any]) -> None:
        # NaN (no trained token in the validation set) is not JSON: leave the metric out.
        row = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        self.last_metrics = row
        self.reporter.emit("metrics", _message(row), row)

    def _flush(self) -> None:
        if self._pending is not None:
            row, self._pending = self._pending, None
            self._emit(row)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any
    ) -> None:
        if not logs or "loss" not in logs:
            return
        self._flush()
        row: dict[str, Any] = {
            "step": state.global_step,
            "total_steps": state.max_steps,
            "train_loss": float(logs["loss"]),
            "train_mean_token_accuracy": float(logs.get("mean_token_accuracy", 0.0)),
        }
        if "rewards/accuracies" in logs:  # DPO: how often the preferred answer out-scores the other
            row["train_reward_accuracy"] = float(logs["rewards/accuracies"])
        if self.validation is not None and kw.get("model") is not None:
            row.update(self.validation.batch_metrics(kw["model"]))
        if self._full is not None and self._full[0] == state.global_step:
            row.update(self._full[1])
        self._full = None
        self._pending = row

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._flush()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        # The Trainer logs after this callback when asked to, and never twice for one step (a step
        # that was a logging step already keeps its row, completed below).
        control.should_log = True
        if self.validation is None or kw.get("model") is None:
            return
        full = self.validation.full_metrics(kw["model"])
        if self._pending is not None and self._pending["step"] == state.global_step:
            self._pending.update(full)
        else:
            self._flush()
            self._full = (state.global_step, full)

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        # Every rank stops at the same step (a SIGTERM reaches them at different moments), else
        # one would save while another waits in the next step's all-reduce.
        if agree(self.stop.requested):
            self.stop.requested = True  # this rank too raises Stopped after train()
            control.should_save = True
            control.should_training_stop = True

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._flush()
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        metrics = dict(self.last_metrics)
        metrics["step"] = state.global_step
        self.on_checkpoint(state.global_step, folder, metrics)
        # A stop that came while this checkpoint was saved (a SIGTERM, or the API's answer to its
        # report: the job was paused meanwhile) is served by this checkpoint. Training on to the next
        # step end would save another one after it, so the job's newest checkpoint would change after
        # the pause had already been seen to save one.
        if agree(self.stop.requested):
            self.stop.requested = True
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._flush()
