"""`auto` hyperparameters → numbers, from the example count and the base model's catalogue entry.

n_epochs follows OpenAI's published rule; batch size and learning rate are ours (OpenAI does not
document them) and are reported as resolved numbers on the job from validation on.
"""

from __future__ import annotations

from typing import Any

from api.catalogue import BaseModelEntry

DEFAULT_BETA = 0.1


def auto_n_epochs(n_examples: int) -> int:
    if n_examples * 3 < 100:
        return min(25, 100 // max(n_examples, 1))
    if n_examples * 3 > 25_000:
        return max(1, 25_000 // n_examples)
    return 3


def auto_batch_size(n_examples: int, entry: BaseModelEntry) -> int:
    # About ten optimizer steps per epoch on small files, the model's default batch on large ones.
    return max(1, min(entry.default_batch_size, n_examples // 10))


def resolve(requested: dict[str, Any], n_examples: int, entry: BaseModelEntry, method: str) -> dict[str, Any]:
    out = {
        "n_epochs": requested.get("n_epochs", "auto"),
        "batch_size": requested.get("batch_size", "auto"),
        "learning_rate_multiplier": requested.get("learning_rate_multiplier", "auto"),
    }
    if out["n_epochs"] == "auto":
        out["n_epochs"] = auto_n_epochs(n_examples)
    if out["batch_size"] == "auto":
        out["batch_size"] = auto_batch_size(n_examples, entry)
    if out["learning_rate_multiplier"] == "auto":
        out["learning_rate_multiplier"] = 1.0
    if method == "dpo":
        beta = requested.get("beta", "auto")
        out["beta"] = DEFAULT_BETA if beta == "auto" else beta
    return out
