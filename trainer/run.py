"""One training run, top to bottom: spec → data from storage → TRL trainer → outputs to storage.

Heavy imports (torch, transformers, trl, peft, datasets) live here and in trainer/tiny.py only.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from storage import BlobStore
from storage.factory import build_store
from trainer import distributed
from trainer.base_model import resolve_base_model
from trainer.data.formats import read_examples
from trainer.hardware import detect, gradient_checkpointing, plan
from trainer.precision import load_kwargs, precision_args
from trainer.reporter import Reporter
from trainer.sft_rows import ChatEncoder, stop_tokens
from trainer.spec import JobSpec
from trainer.stop import Stopped, StopRequest
from trainer.tracking import Tracking

BASE_EVALUATION_FILE = "ftapi_base_evaluation.json"  # kept in each checkpoint for resumed attempts
# Files a saved adapter or model may contain; anything else (pickles, code) is never uploaded.
_ALLOWED_OUTPUTS = (".safetensors", ".json", ".jinja", ".txt", ".model")


async def _save_blob(store: BlobStore, key: str, dest: Path) -> None:
    await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
    f = await asyncio.to_thread(dest.open, "wb")
    with f:
        async for chunk in store.open_stream(key):
            await asyncio.to_thread(f.write, chunk)


async def _download(spec: JobSpec, key: str, dest: Path) -> None:
    store = build_store(spec.storage)
    try:
        await _save_blob(store, key, dest)
    finally:
        await store.close()


async def _upload_dir(
    spec: JobSpec, local: Path, prefix: str, everything: bool = False, only: str | None = None
) -> list[str]:
    """Upload a saved model (safetensors and configs only) or, with `everything`, a checkpoint,
    whose optimizer and RNG state only our own trainer ever reads back (`only`: that one file)."""
    store = build_store(spec.storage)
    keys = []
    try:
        for path in await asyncio.to_thread(_output_files, local, everything):
            if only is not None and path.name != only:
                continue
            key = prefix + path.relative_to(local).as_posix()
            await store.put_bytes(key, await asyncio.to_thread(path.read_bytes))
            keys.append(key)
    finally:
        await store.close()
    return keys


def _output_files(local: Path, everything: bool) -> list[Path]:
    return sorted(
        p for p in local.rglob("*") if p.is_file() and (everything or p.name.endswith(_ALLOWED_OUTPUTS))
    )


async def _download_prefix(spec: JobSpec, prefix: str, dest: Path, weights_only: bool = False) -> None:
    """Download everything under `prefix` or, with `weights_only`, its safetensors and configs."""
    store = build_store(spec.storage)
    try:
        for key in await store.list_keys(prefix):
            if weights_only and not key.endswith(_ALLOWED_OUTPUTS):
                continue
            await _save_blob(store, key, dest / key[len(prefix) :])
    finally:
        await store.close()


def _preference_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI's DPO layout → TRL's conversational prompt/chosen/rejected."""
    out = []
    for row in rows:
        chosen = row.get("preferred_output", row.get("preferred_completion"))
        rejected = row.get("non_preferred_output", row.get("non_preferred_completion"))
        out.append({"prompt": row["input"]["messages"], "chosen": chosen, "rejected": rejected})
    return out


def training_rows(
    rows: list[dict[str, Any]], method: str, chat: ChatEncoder | None = None
) -> list[dict[str, Any]]:
    """The rows the TRL trainer's dataset is built from (`Dataset.from_list`): for SFT pre-tokenized
    with ftapi's own assistant mask (trainer.sft_rows), so TRL builds the labels from
    `assistant_masks` and never touches the chat template."""
    if method == "dpo":
        return _preference_rows(rows)
    assert chat is not None, "SFT rows are tokenized with the model's chat template"
    return chat.rows([r["messages"] for r in rows])


def _token_count(dataset: Any) -> int:
    """Tokens in one pass over the processed dataset (SFT: input_ids; DPO: prompt, chosen and
    rejected ids, which TRL 1.16 names *_ids)."""
    columns = {"input_ids", "prompt_ids", "chosen_ids", "rejected_ids"} & set(dataset.column_names)
    return sum(sum(len(ids) for ids in dataset[c]) for c in columns)


def _from_tuned(base: Any, weights: Path, mode: str, load: dict[str, Any]) -> Any:
    """The model a job on a tuned model starts from: the base with that model's adapter, trainable
    (LoRA), or that model's full weights."""
    if mode == "lora":
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(weights), is_trainable=True)
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(weights), **load)


def run(spec: JobSpec, reporter: Reporter, stop: StopRequest | None = None) -> dict[str, Any]:
    """Train `spec`; with `reporter` a trainer.tracking.Tracking, its trackers follow the run."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from trainer.callbacks import ProgressCallback, Validation
    from trainer.evaluate import Evaluation, conversations, encode, evaluate, overlap

    stop = stop or StopRequest()
    set_seed(spec.seed)
    work = Path(tempfile.mkdtemp(prefix=f"ftapi-{spec.job_id}-"))
    asyncio.run(_download(spec, spec.training_file_key, work / "train.jsonl"))
    rows = read_examples(work / "train.jsonl")
    valid_rows: list[dict[str, Any]] = []
    if spec.validation_file_key:
        asyncio.run(_download(spec, spec.validation_file_key, work / "valid.jsonl"))
        valid_rows = read_examples(work / "valid.jsonl")
    model_dir = resolve_base_model(spec.base_model.source, Path(spec.cache_dir).expanduser(), spec.storage)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    hw_plan = plan(spec.training, detect(), spec.mode)
    model = AutoModelForCausalLM.from_pretrained(model_dir, **load_kwargs(hw_plan))
    if spec.init_weights_prefix is not None:  # a job on a tuned model continues from its weights
        init_dir = work / "init"
        asyncio.run(_download_prefix(spec, spec.init_weights_prefix, init_dir, weights_only=True))
        model = _from_tuned(model, init_dir, spec.mode, load_kwargs(hw_plan))
    if hw_plan.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    checkpointing = gradient_checkpointing(spec.training, model.num_parameters())
    hp = spec.hyperparameters
    max_length = spec.base_model.max_length
    chat_encoder = ChatEncoder(tokenizer, max_length, stop_tokens(tokenizer, model.generation_config))

    resume_path = None
    if spec.resume_from is not None:
        resume_path = work / "checkpoints" / f"checkpoint-{spec.resume_from.step}"
        asyncio.run(_download_prefix(spec, spec.resume_from.storage_prefix, resume_path))
        reporter.emit(
            "message", f"Fine-tuning job resumed from the checkpoint at step {spec.resume_from.step}"
        )
    else:
        reporter.emit("message", "Fine-tuning job started")

    validation = None
    base_eval = None
    valid_convs = conversations(valid_rows, spec.method)
    if valid_rows and distributed.is_main():  # evaluation is rank 0's, like every report
        # Said once, by the first attempt; a resumed attempt has nothing new to say.
        shared = overlap(conversations(rows, spec.method), valid_convs) if resume_path is None else 0
        if shared:
            reporter.emit(
                "message",
                f"{shared} of {len(valid_rows)} validation examples also appear in the training file: "
                "validation metrics will overstate how well the model does on new data",
                {"overlapping_examples": shared, "validation_examples": len(valid_rows)},
                level="warn",
            )
        encoded = [encode(chat_encoder, c) for c in valid_convs]
        validation = Validation(tokenizer, encoded, hp.batch_size)
        eval_convs, eval_encoded = valid_convs[: spec.eval_max_examples], encoded[: spec.eval_max_examples]
        # The base model does not change: a resumed attempt reads the first attempt's evaluation
        # from its checkpoint instead of generating over the validation set again.
        saved = resume_path / BASE_EVALUATION_FILE if resume_path is not None else None
        if saved is not None and saved.exists():
            base_eval = Evaluation.from_dict(json.loads(saved.read_text()))
        else:
            base_eval = evaluate(model, tokenizer, eval_convs, eval_encoded, hp.batch_size)

    def save_checkpoint(step: int, folder: Path, metrics: dict[str, Any]) -> None:
        if base_eval is not None:
            (folder / BASE_EVALUATION_FILE).write_text(json.dumps(base_eval.as_dict()))
        prefix = f"{spec.output_prefix}checkpoints/step-{step}/"
        # Rank 0 uploads the checkpoint; another rank adds only its own RNG state, before rank 0
        # reports it, so that a resumed run finds every rank's state.
        only = None if distributed.is_main() else f"rng_state_{distributed.rank()}.pth"
        asyncio.run(_upload_dir(spec, folder, prefix, everything=True, only=only))
        distributed.barrier()
        reporter.checkpoint(step, prefix, metrics)

    peft_config = (
        LoraConfig(
            r=spec.lora.r,
            lora_alpha=spec.lora.alpha,
            lora_dropout=spec.lora.dropout,
            target_modules=spec.lora.target_modules,
            task_type="CAUSAL_LM",
        )
        if spec.mode == "lora" and spec.init_weights_prefix is None  # else the adapter is there already
        else None
    )
    common: dict[str, Any] = {
        "output_dir": str(work / "checkpoints"),
        "num_train_epochs": hp.n_epochs,
        "learning_rate": hp.learning_rate,
        "logging_steps": spec.logging_steps,
        "save_strategy": "epoch",
        "save_total_limit": 3,
        # Not transformers' own W&B/MLflow callbacks: the job's trackers (trainer.tracking) get the
        # same metrics as the job's events, with OpenAI's names, and the final evaluation.
        "report_to": [],
        "seed": spec.seed,
        "data_seed": spec.seed,
        **precision_args(hw_plan),
        "gradient_checkpointing": checkpointing,
        "disable_tqdm": True,
        **distributed.training_arguments(spec, hp.batch_size, torch.cuda.is_available()),
    }
    callback = ProgressCallback(reporter, stop, save_checkpoint, validation)
    callbacks: list[Any] = [callback]
    if isinstance(reporter, Tracking):
        from trainer.tracking.callback import TrackingCallback

        callbacks.append(TrackingCallback(reporter))
    if spec.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        trainer: Any = DPOTrainer(
            model=model,
            args=DPOConfig(**common, beta=hp.beta or 0.1, max_length=max_length),
            train_dataset=Dataset.from_list(training_rows(rows, "dpo")),
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=callbacks,
        )
    else:
        from trl import SFTConfig

        from trainer.sft import LengthGroupedSFTTrainer

        trainer = LengthGroupedSFTTrainer(
            model=model,
            # Padding-free: rows are already truncated to max_length, which TRL would not enforce.
            args=SFTConfig(
                **common,
                max_length=None if hw_plan.padding_free else max_length,
                padding_free=hw_plan.padding_free,
            ),
            train_dataset=Dataset.from_list(training_rows(rows, "supervised", chat_encoder)),
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=callbacks,
        )
    stop.training = True
    result = trainer.train(resume_from_checkpoint=str(resume_path) if resume_path else None)
    stop.training = False
    if stop.requested:
        raise Stopped(f"stopped at step {trainer.state.global_step} after saving a checkpoint")

    final = work / "final"
    trainer.save_model(str(final))  # on every rank: FSDP gathers the shards; rank 0 writes
    if not distributed.is_main():
        return {"steps": result.global_step, "rank": distributed.rank()}
    tokenizer.save_pretrained(str(final))
    model_keys = asyncio.run(_upload_dir(spec, final, spec.output_prefix + "model/"))
    summary: dict[str, Any] = {
        "train_loss": result.training_loss,
        "steps": result.global_step,
        "train_seconds": result.metrics.get("train_runtime"),
        # Counted from the data, not from TRL's running count, which restarts when a run resumes.
        "trained_tokens": _token_count(trainer.train_dataset) * hp.n_epochs,
        "model_keys": model_keys,
    }
    if base_eval is not None:
        tuned = trainer.model
        tuned_eval = evaluate(tuned, tokenizer, eval_convs, eval_encoded, hp.batch_size)
        summary["evaluation"] = {"base": base_eval.as_dict(), "tuned": tuned_eval.as_dict()}
        reporter.emit(
            "message",
            f"Evaluation on {base_eval.examples} validation examples: base model loss={base_eval.loss:.2f}, "
            f"exact match={base_eval.exact_match:.0%}; fine-tuned model loss={tuned_eval.loss:.2f}, "
            f"exact match={tuned_eval.exact_match:.0%}",
            summary["evaluation"],
        )
    reporter.complete(summary)
    return summary
