"""TrainerCallback that turns the Trainer's logs into OpenAI-shaped metrics events."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from trainer.reporter import Reporter


class MetricsCallback(TrainerCallback):  # type: ignore[misc]
    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.rows: list[dict[str, Any]] = []
        self.tokens_seen = 0

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **_: Any
    ) -> None:
        if not logs or "loss" not in logs:
            return
        self.tokens_seen = int(logs.get("num_tokens", self.tokens_seen))
        row = {
            "step": state.global_step,
            "total_steps": state.max_steps,
            "train_loss": float(logs["loss"]),
            "train_mean_token_accuracy": float(
                logs.get("mean_token_accuracy", logs.get("rewards/accuracies", 0.0))
            ),
        }
        self.rows.append({**row, "train_accuracy": row["train_mean_token_accuracy"]})
        self.reporter.emit(
            "metrics", f"Step {row['step']}/{row['total_steps']}: training loss={row['train_loss']:.2f}", row
        )
