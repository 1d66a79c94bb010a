"""TRL's SFTTrainer with ftapi's batching (heavy imports: loaded by the run only)."""

from __future__ import annotations

from typing import Any

from trl import SFTTrainer

from trainer.batching import LengthGroupedBatches


class LengthGroupedSFTTrainer(SFTTrainer):  # type: ignore[misc]
    def _get_train_sampler(self, train_dataset: Any = None) -> LengthGroupedBatches:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = [len(ids) for ids in dataset["input_ids"]]
        # One optimizer step's examples over every process: accelerate deals them out batch by batch.
        per_step = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        return LengthGroupedBatches(lengths, per_step, self.args.seed)
