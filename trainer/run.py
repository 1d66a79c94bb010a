"""One training run, top to bottom: spec → data from storage → TRL trainer → outputs to storage.

Heavy imports (torch, transformers, trl, peft, datasets) live here and in trainer/tiny.py only.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from storage.factory import build_store
from trainer.reporter import Reporter
from trainer.spec import JobSpec
from trainer.tiny import TINY_CHAT, build_tiny_chat

# Files a saved adapter or model may contain; anything else (pickles, code) is never uploaded.
_ALLOWED_OUTPUTS = (".safetensors", ".json", ".jinja", ".txt", ".model")


def resolve_base_model(source: str, cache_dir: Path) -> str:
    if source == f"builtin:{TINY_CHAT}":
        return str(build_tiny_chat(cache_dir))
    return source  # a local directory or a hub id (hub downloads only where the network allows)


async def _download(spec: JobSpec, key: str, dest: Path) -> None:
    store = build_store(spec.storage)
    try:
        f = await asyncio.to_thread(dest.open, "wb")
        with f:
            async for chunk in store.open_stream(key):
                await asyncio.to_thread(f.write, chunk)
    finally:
        await store.close()


async def _upload_dir(spec: JobSpec, local: Path, prefix: str) -> list[str]:
    store = build_store(spec.storage)
    keys = []
    try:
        for path in await asyncio.to_thread(_output_files, local):
            key = prefix + path.relative_to(local).as_posix()
            await store.put_bytes(key, await asyncio.to_thread(path.read_bytes))
            keys.append(key)
    finally:
        await store.close()
    return keys


def _output_files(local: Path) -> list[Path]:
    return sorted(p for p in local.rglob("*") if p.is_file() and p.name.endswith(_ALLOWED_OUTPUTS))


async def _upload_bytes(spec: JobSpec, key: str, data: bytes) -> None:
    store = build_store(spec.storage)
    try:
        await store.put_bytes(key, data)
    finally:
        await store.close()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _preference_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI's DPO layout → TRL's conversational prompt/chosen/rejected."""
    out = []
    for row in rows:
        chosen = row.get("preferred_output", row.get("preferred_completion"))
        rejected = row.get("non_preferred_output", row.get("non_preferred_completion"))
        out.append({"prompt": row["input"]["messages"], "chosen": chosen, "rejected": rejected})
    return out


def run(spec: JobSpec, reporter: Reporter) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from trainer.callbacks import MetricsCallback

    set_seed(spec.seed)
    work = Path(tempfile.mkdtemp(prefix=f"ftapi-{spec.job_id}-"))
    train_path = work / "train.jsonl"
    asyncio.run(_download(spec, spec.training_file_key, train_path))
    rows = _read_jsonl(train_path)
    model_dir = resolve_base_model(spec.base_model.source, Path(spec.cache_dir).expanduser())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    hp = spec.hyperparameters
    peft_config = (
        LoraConfig(
            r=spec.lora.r,
            lora_alpha=spec.lora.alpha,
            lora_dropout=spec.lora.dropout,
            target_modules=spec.lora.target_modules,
            task_type="CAUSAL_LM",
        )
        if spec.mode == "lora"
        else None
    )
    common: dict[str, Any] = {
        "output_dir": str(work / "checkpoints"),
        "num_train_epochs": hp.n_epochs,
        "per_device_train_batch_size": hp.batch_size,
        "learning_rate": hp.learning_rate,
        "logging_steps": spec.logging_steps,
        "save_strategy": "epoch",
        "save_total_limit": 3,
        "report_to": [],
        "seed": spec.seed,
        "data_seed": spec.seed,
        "use_cpu": not torch.cuda.is_available(),
        "bf16": False,
        "disable_tqdm": True,
    }
    callback = MetricsCallback(reporter)
    reporter.emit("message", "Fine-tuning job started")
    if spec.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        trainer: Any = DPOTrainer(
            model=model,
            args=DPOConfig(**common, beta=hp.beta or 0.1, max_length=spec.base_model.max_length),
            train_dataset=Dataset.from_list(_preference_rows(rows)),
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[callback],
        )
    else:
        from trl import SFTConfig, SFTTrainer

        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(**common, assistant_only_loss=True, max_length=spec.base_model.max_length),
            train_dataset=Dataset.from_list([{"messages": r["messages"]} for r in rows]),
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[callback],
        )
    result = trainer.train()
    final = work / "final"
    trainer.save_model(str(final))
    tokenizer.save_pretrained(str(final))
    model_keys = asyncio.run(_upload_dir(spec, final, spec.output_prefix + "model/"))
    asyncio.run(_upload_bytes(spec, spec.output_prefix + "step_metrics.csv", _metrics_csv(callback.rows)))
    summary = {
        "train_loss": result.training_loss,
        "steps": result.global_step,
        # TRL's own count; it restarts at 0 on resume, which the resume slice must account for.
        "trained_tokens": callback.tokens_seen,
        "model_keys": model_keys,
    }
    reporter.complete(summary)
    return summary


def _metrics_csv(rows: list[dict[str, Any]]) -> bytes:
    columns = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            ["" if row.get(c) is None else (round(row[c], 5) if c != "step" else row[c]) for c in columns]
        )
    return out.getvalue().encode()
