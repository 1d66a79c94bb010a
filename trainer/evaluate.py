"""Held-out evaluation: loss and token accuracy over the trained (assistant) tokens, and exact match
of the final assistant turn. Serves the validation metrics during training and the base-vs-tuned
report at the end: the honest measure of a fine-tune is data it never trained on."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from trainer.sft_rows import ChatEncoder

Conversation = list[dict[str, Any]]


def conversations(rows: list[dict[str, Any]], method: str) -> list[Conversation]:
    """What is evaluated per example: the chat itself, or for DPO the prompt and its preferred answer."""
    if method == "dpo":
        return [list(row["input"]["messages"]) + list(row.get("preferred_output") or []) for row in rows]
    return [list(row["messages"]) for row in rows]


def overlap(train: list[Conversation], valid: list[Conversation]) -> int:
    """How many validation examples also occur, verbatim, in the training data."""
    seen = {json.dumps(c, sort_keys=True) for c in train}
    return sum(json.dumps(c, sort_keys=True) in seen for c in valid)


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    trained: list[int]  # 1 where the token is a trained assistant token


def encode(chat_encoder: ChatEncoder, conversation: Conversation) -> Encoded:
    """The same tokens and mask the trainer trains on (trainer.sft_rows)."""
    ids, mask = chat_encoder(conversation)
    return Encoded(ids, mask)


@dataclass(frozen=True)
class TokenMetrics:
    loss: float
    mean_token_accuracy: float


def token_metrics(model: Any, tokenizer: Any, examples: list[Encoded], batch_size: int) -> TokenMetrics:
    """Mean cross-entropy and next-token accuracy over trained tokens, as the trainer computes them."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    loss_sum, correct, counted = 0.0, 0, 0
    try:
        with torch.no_grad():
            for start in range(0, len(examples), batch_size):
                chunk = examples[start : start + batch_size]
                width = max(len(e.input_ids) for e in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                attention = torch.zeros((len(chunk), width), dtype=torch.long)
                labels = torch.full((len(chunk), width), -100, dtype=torch.long)
                for i, e in enumerate(chunk):
                    n = len(e.input_ids)
                    ids[i, :n] = torch.tensor(e.input_ids)
                    attention[i, :n] = 1
                    labels[i, :n] = torch.where(torch.tensor(e.trained) == 1, ids[i, :n], -100)
                device = next(model.parameters()).device
                logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits
                logits, targets = logits[:, :-1].float(), labels[:, 1:].to(device)
                loss_sum += F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]),
                    targets.reshape(-1),
                    ignore_index=-100,
                    reduction="sum",
                ).item()
                mask = targets != -100
                correct += int(((logits.argmax(-1) == targets) & mask).sum())
                counted += int(mask.sum())
    finally:
        model.train(was_training)
    if counted == 0:
        return TokenMetrics(float("nan"), float("nan"))
    return TokenMetrics(loss_sum / counted, correct / counted)


def exact_match(model: Any, tokenizer: Any, examples: list[Conversation], max_new_tokens: int = 256) -> float:
    """Share of examples whose greedy answer equals the final assistant turn (whitespace-trimmed)."""
    import torch

    scored = [
        c
        for c in examples
        if c and c[-1].get("role") == "assistant" and isinstance(c[-1].get("content"), str)
    ]
    if not scored:
        return float("nan")
    was_training = model.training
    model.eval()
    hits = 0
    try:
        for conversation in scored:
            expected = conversation[-1]["content"].strip()
            prompt = tokenizer.apply_chat_template(
                conversation[:-1], add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            budget = min(max_new_tokens, len(tokenizer(expected)["input_ids"]) + 8)
            device = next(model.parameters()).device
            with torch.no_grad():
                out = model.generate(
                    **{k: v.to(device) for k, v in prompt.items()},
                    max_new_tokens=budget,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
            answer = tokenizer.decode(out[0][prompt["input_ids"].shape[1] :], skip_special_tokens=True)
            hits += answer.strip() == expected
    finally:
        model.train(was_training)
    return hits / len(scored)


@dataclass(frozen=True)
class Evaluation:
    examples: int
    loss: float
    mean_token_accuracy: float
    exact_match: float

    def as_dict(self) -> dict[str, float | int | None]:
        """JSON-safe: a figure that could not be computed (NaN) is None."""
        values = {
            "loss": self.loss,
            "mean_token_accuracy": self.mean_token_accuracy,
            "exact_match": self.exact_match,
        }
        return {"examples": self.examples, **{k: None if math.isnan(v) else v for k, v in values.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        def figure(key: str) -> float:
            return float("nan") if data.get(key) is None else float(data[key])

        return cls(
            int(data["examples"]), figure("loss"), figure("mean_token_accuracy"), figure("exact_match")
        )


def evaluate(
    model: Any, tokenizer: Any, examples: list[Conversation], encoded: list[Encoded], batch_size: int
) -> Evaluation:
    metrics = token_metrics(model, tokenizer, encoded, batch_size)
    return Evaluation(
        len(examples), metrics.loss, metrics.mean_token_accuracy, exact_match(model, tokenizer, examples)
    )
