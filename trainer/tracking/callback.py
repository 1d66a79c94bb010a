"""Opens the trackers' runs when training begins, with what only the Trainer knows by then (its
step count and schedule) added to the job's configuration. Imported by trainer.run only."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from trainer.tracking import Tracking


class TrackingCallback(TrainerCallback):  # type: ignore[misc]
    def __init__(self, tracking: Tracking) -> None:
        self.tracking = tracking

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.tracking.start(
            {
                "total_steps": state.max_steps,
                "lr_scheduler_type": str(args.lr_scheduler_type),
                "warmup_steps": args.warmup_steps,
                "weight_decay": args.weight_decay,
                "gradient_accumulation_steps": args.gradient_accumulation_steps,
            }
        )
