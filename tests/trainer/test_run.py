"""The trainer as the executor runs it: `python -m trainer run --spec`, data and outputs in storage.

Slow (real training on the CPU). tiny-chat must really learn: held-out exact match, base vs tuned.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from storage.config import LocalStoreConfig
from storage.local import LocalBlobStore
from tests.support.sentiment import sentiment_sets, to_jsonl
from trainer.spec import BaseModelRef, Hyperparameters, JobSpec

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
    root = tmp_path / "blobs"
    store = LocalBlobStore(root)
    asyncio.run(store.put_bytes("files/p/train.jsonl", to_jsonl(train)))
    spec = JobSpec(
        job_id="ftjob-test",
        base_model=BaseModelRef(id="tiny-chat", source="builtin:tiny-chat", max_length=256),
        hyperparameters=Hyperparameters(n_epochs=40, batch_size=8, learning_rate=5e-3),
        storage=LocalStoreConfig(root=root),
        training_file_key="files/p/train.jsonl",
        output_prefix="jobs/p/ftjob-test/",
        cache_dir=str(tmp_path / "cache"),
        logging_steps=10,
    )
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(spec.model_dump_json())
    events_path = tmp_path / "events.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "trainer", "run", "--spec", str(spec_path), "--events", str(events_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
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
