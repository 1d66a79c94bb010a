"""The trainer as the executor runs it: `python -m trainer run --spec`, data and outputs in storage.

Slow (real training on the CPU). tiny-chat must really learn: held-out exact match, base vs tuned.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.sentiment import sentiment_sets, to_jsonl
from tests.support.trainer_cli import run_trainer
from trainer.spec import Hyperparameters

pytestmark = pytest.mark.slow


def exact_match(model: Any, tokenizer: Any, rows: list[dict[str, Any]]) -> int:
    import torch

    hits = 0
    for row in rows:
        prompt = tokenizer.apply_chat_template(
            row["messages"][:-1], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
        answer = tokenizer.decode(out[0][prompt["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        hits += answer == row["messages"][-1]["content"]
    return hits


def test_lora_sft_run_learns_the_task(tmp_path: Path) -> None:
    train, test = sentiment_sets()
    run = run_trainer(
        tmp_path, to_jsonl(train), Hyperparameters(n_epochs=40, batch_size=8, learning_rate=5e-3), timeout=600
    )
    done, spec, store, root, events_path = run.done, run.spec, run.store, run.root, run.events_path
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["trained_tokens"] > 0 and summary["steps"] == 40 * 8

    events = [json.loads(x) for x in events_path.read_text().splitlines()]
    assert events[0]["message"] == "Fine-tuning job started"
    metrics = [e for e in events if e["type"] == "metrics"]
    assert metrics and set(metrics[0]["data"]) >= {
        "step",
        "total_steps",
        "train_loss",
        "train_mean_token_accuracy",
    }
    assert metrics[-1]["data"]["step"] == metrics[-1]["data"]["total_steps"] == 320
    assert events[-1]["type"] == "complete" and events[-1]["data"]["trained_tokens"] > 0

    # The model is safetensors and configs only; checkpoints carry the full state for resuming.
    model_keys = asyncio.run(store.list_keys("jobs/p/ftjob-test/model/"))
    assert "jobs/p/ftjob-test/model/adapter_model.safetensors" in model_keys
    assert not [k for k in model_keys if k.endswith((".bin", ".pt", ".pth", ".py", ".pkl"))]
    checkpoints = [e["data"] for e in events if e["type"] == "checkpoint"]
    assert [c["step"] for c in checkpoints] == list(range(8, 321, 8))  # one per epoch
    last = asyncio.run(store.list_keys(checkpoints[-1]["storage_prefix"]))
    assert {"optimizer.pt", "trainer_state.json", "adapter_model.safetensors"} <= {
        k.rsplit("/", 1)[1] for k in last
    }

    # The honest test is held-out data: the tuned model gets it right, the base model does not.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = Path(spec.cache_dir) / "tiny-chat-v1"
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    assert exact_match(base, tokenizer, test) == 0
    tuned = PeftModel.from_pretrained(base, root / "jobs/p/ftjob-test/model")
    assert exact_match(tuned, tokenizer, test) >= 14  # >= 90 % of 15
