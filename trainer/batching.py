"""Length-grouped batches: less padding, so more of every step is real tokens.

On a CPU (and on GPUs without FlashAttention) a batch costs what its longest row costs; with a
long-tailed mix of lengths a random batch is mostly padding. Sorting by a noisy length inside large
random windows groups similar lengths while still changing which examples meet in a batch each
epoch, and the batch order is shuffled, so the first batch is not always the longest. Deterministic
per (seed, epoch), which resuming from a checkpoint relies on: the Trainer calls `set_epoch`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

WINDOW_BATCHES = 32  # batches per sorting window: bigger groups better, smaller shuffles more
LENGTH_NOISE = 0.1  # ±10 %: near-equal lengths mix across epochs, very different ones never do


class LengthGroupedBatches:
    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        self.lengths = list(lengths)
        self.batch_size = max(1, batch_size)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        window = self.batch_size * WINDOW_BATCHES
        batches: list[list[int]] = []
        for start in range(0, len(order), window):
            chunk = order[start : start + window]
            noisy = {i: self.lengths[i] * rng.uniform(1 - LENGTH_NOISE, 1 + LENGTH_NOISE) for i in chunk}
            chunk.sort(key=noisy.__getitem__)
            batches.extend(chunk[b : b + self.batch_size] for b in range(0, len(chunk), self.batch_size))
        # A short last batch stays last so that every other batch is full.
        full = [b for b in batches if len(b) == self.batch_size]
        short = [b for b in batches if len(b) < self.batch_size]
        rng.shuffle(full)
        for batch in full + short:
            yield from batch


def padding_share(lengths: Sequence[int], batches: list[list[int]]) -> float:
    """Fraction of a padded batch's cells that are padding (for the benchmark's report)."""
    cells = sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
    real = sum(lengths[i] for b in batches for i in b)
    return 1 - real / cells if cells else 0.0
