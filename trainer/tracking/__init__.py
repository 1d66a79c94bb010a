"""Experiment trackers (W&B, MLflow) for a run: the job's `integrations`, reported from the trainer.

`Tracking` wraps the run's Reporter: every metrics event the API gets also goes to each tracker at
its step, the final summary (with the evaluation) goes to each before the run completes, and each
run is closed when training ends, with the run's outcome. A tracker that fails is reported to the
user as a `warn` event and dropped: an integration never stops training. The tracker libraries are
imported only when a job asks for them (the trainer image has them, the API does not need them).
"""

from __future__ import annotations

import math
import sys
from types import TracebackType
from typing import Any, Literal, Protocol

from trainer.reporter import Reporter
from trainer.spec import Integration, JobSpec, MlflowIntegration
from trainer.stop import Stopped

Outcome = Literal["succeeded", "failed", "stopped"]
# Keys of a metrics row that are positions, not measurements.
_NOT_METRICS = ("step", "total_steps")


class Tracker(Protocol):
    label: str  # how the user knows it: "W&B", "MLflow"

    def start(self, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Open (or, for a resumed attempt, reopen) the job's run with its configuration.
        Returns the event's message and data saying where the run is."""
        ...

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Record one step's metrics."""
        ...

    def summary(self, values: dict[str, float]) -> None:
        """Record the run's final values (loss, tokens, evaluation)."""
        ...

    def finish(self, outcome: Outcome) -> None:
        """Close the run with the attempt's outcome."""
        ...


def build_tracker(integration: Integration, spec: JobSpec) -> Tracker:
    if isinstance(integration, MlflowIntegration):
        from trainer.tracking.mlflow_run import MlflowTracker

        return MlflowTracker(integration, spec)
    from trainer.tracking.wandb_run import WandbTracker

    return WandbTracker(integration, spec)


def job_config(spec: JobSpec) -> dict[str, Any]:
    """The hyperparameters and setup of the job, as each tracker's run configuration."""
    hp = spec.hyperparameters
    config: dict[str, Any] = {
        "job_id": spec.job_id,
        "base_model": spec.base_model.id,
        "method": spec.method,
        "mode": spec.mode,
        "n_epochs": hp.n_epochs,
        "batch_size": hp.batch_size,
        "learning_rate": hp.learning_rate,
        "seed": spec.seed,
        "max_length": spec.base_model.max_length,
    }
    if hp.beta is not None:
        config["beta"] = hp.beta
    if spec.mode == "lora":
        config |= {"lora_r": spec.lora.r, "lora_alpha": spec.lora.alpha, "lora_dropout": spec.lora.dropout}
    return config


def final_values(summary: dict[str, Any]) -> dict[str, float]:
    """A completed run's summary as flat numbers: `final/train_loss` (the run's mean training loss),
    `final/trained_tokens`, `final/steps` and, with a validation file,
    `evaluation/<base|tuned>/<loss|exact_match|...>` (the final evaluation of both models)."""
    keys = ("train_loss", "trained_tokens", "steps")
    values = {f"final/{k}": float(summary[k]) for k in keys if summary.get(k) is not None}
    for model, scores in (summary.get("evaluation") or {}).items():
        for name, value in scores.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                values[f"evaluation/{model}/{name}"] = float(value)
    return values


class Tracking:
    """A Reporter that also reports to the job's trackers; a context manager around the run."""

    def __init__(self, spec: JobSpec, reporter: Reporter, trackers: list[Tracker] | None = None) -> None:
        self.spec = spec
        self.reporter = reporter
        self._pending = (
            trackers if trackers is not None else [build_tracker(i, spec) for i in spec.integrations]
        )
        self._live: list[Tracker] = []
        self._started = False

    # -- the run's side ---------------------------------------------------------------------------

    def start(self, extra_config: dict[str, Any] | None = None) -> None:
        """Open every tracker's run (once; the training callback calls this when training begins)."""
        if self._started:
            return
        self._started = True
        config = job_config(self.spec) | (extra_config or {})
        for tracker in self._pending:
            try:
                message, data = tracker.start(config)
            except Exception as exc:
                self._failed(tracker, "could not start", exc, live=False)
                continue
            self._live.append(tracker)
            self.reporter.emit("message", message, data)

    def _failed(self, tracker: Tracker, what: str, exc: Exception, *, live: bool = True) -> None:
        if live and tracker in self._live:
            self._live.remove(tracker)
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
        message = f"The {tracker.label} integration {what} ({error}); training goes on without it"
        try:
            self.reporter.emit(
                "message", message, {"integration": tracker.label, "error": error}, level="warn"
            )
        except Exception:  # the job has ended (a run closed after the API took the completion)
            print(f"ftapi: {message}", file=sys.stderr, flush=True)

    def _each(self, what: str, call: Any) -> None:
        for tracker in list(self._live):
            try:
                call(tracker)
            except Exception as exc:
                self._failed(tracker, what, exc)

    # -- Reporter ---------------------------------------------------------------------------------

    def emit(self, kind: str, message: str, data: dict[str, Any] | None = None, level: str = "info") -> None:
        self.reporter.emit(kind, message, data, level)
        if kind != "metrics" or not data or "step" not in data:
            return
        self.start()
        metrics = {
            k: float(v)
            for k, v in data.items()
            if k not in _NOT_METRICS and isinstance(v, int | float) and not isinstance(v, bool)
        }
        step = int(data["step"])
        self._each("failed to record metrics", lambda t: t.log(metrics, step))

    def checkpoint(self, step: int, storage_prefix: str, metrics: dict[str, Any]) -> None:
        self.reporter.checkpoint(step, storage_prefix, metrics)

    def complete(self, summary: dict[str, Any]) -> None:
        # Before the API hears of it: the completion may take long (the model is probed) and the
        # final values belong to the run whatever the API answers.
        self.start()
        values = final_values(summary)
        self._each("failed to record the final summary", lambda t: t.summary(values))
        self.reporter.complete(summary)

    # -- the run's lifetime -----------------------------------------------------------------------

    def __enter__(self) -> Tracking:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        outcome: Outcome = "succeeded" if exc is None else "stopped" if isinstance(exc, Stopped) else "failed"
        self._each("failed to close its run", lambda t: t.finish(outcome))
        self._live.clear()
