"""GPU training benchmark: ftapi's trainer against a plain TRL SFTTrainer script, on real model shapes.

    python -m bench.gpu_train                 # a single GPU, offline: Qwen2-0.5B and -1.5B shapes
    python -m bench.gpu_train --tiny          # the same code on a CPU with a tiny shape (CI runs it)

Needs no network: the models are random-init Qwen2 configurations of the real sizes (hidden size,
layers, heads, grouped KV heads, the 151,936-token vocabulary: what costs time and memory), saved
in bf16 like hub checkpoints, with the tokenizer ftapi trains locally for tiny-chat. Random weights
train as fast as real ones; the losses mean nothing here.

Both sides train the same LoRA (r 16, all linear layers) on the same long-tailed chat data
(bench/train.py's) with the same batch size, epochs, learning rate and seed:
  baseline  trl.SFTTrainer with SFTConfig's defaults, as TRL's docs show it (bf16 on a GPU)
  ours      `trainer.run.run`, exactly what `python -m trainer run` does for a job (its precision,
            batching and settings, whatever they are in this checkout), from a local model folder;
            its time includes the checkpoint a job saves at each epoch end (the baseline saves none)
Reported per shape and side: real (unpadded) tokens per second of training (train_runtime: model
load and saving excluded), peak GPU memory (torch.cuda.max_memory_allocated; none on a CPU), and
model FLOPs utilisation: tokens/s * FLOPs per token / the GPU's peak dense bf16 FLOP/s. FLOPs per
token follow PaLM's count, 6·N + 12·L·d·s (N parameters in matmuls including the output layer, L
layers, d hidden size, s mean sequence length), with 4·N instead of 6·N for LoRA: frozen weights
need no weight gradients. The GPU's peak comes from a table of common GPUs or `--peak-tflops`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.train import long_tailed_chats


@dataclass(frozen=True)
class Shape:
    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int | None  # None: the tokenizer's own size (the tiny CPU shape)


SHAPES = {
    "qwen2-0.5b": Shape("qwen2-0.5b", 896, 4864, 24, 14, 2, 151936),
    "qwen2-1.5b": Shape("qwen2-1.5b", 1536, 8960, 28, 12, 2, 151936),
    "tiny": Shape("tiny", 64, 128, 2, 4, 2, None),
}
# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, matched against torch's device name.
PEAK_TFLOPS = {
    "H100": 989.0,
    "H200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 125.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "V100": 125.0,
    "T4": 65.0,
}


def build_model(shape: Shape, tokenizer_dir: Path, out: Path, on_gpu: bool) -> Path:
    """A random-init Qwen2 of `shape` beside the tokenizer, saved like a hub checkpoint."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen2Config(
        vocab_size=shape.vocab or len(tokenizer),
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    dtype = torch.bfloat16 if on_gpu else torch.float32
    torch.manual_seed(0)
    with torch.device("cuda" if on_gpu else "cpu"):
        model = Qwen2ForCausalLM(config).to(dtype)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    del model
    return out


def flops_per_token(config: Any, mean_length: float, mode: str) -> float:
    d, layers = config.hidden_size, config.num_hidden_layers
    kv = d // config.num_attention_heads * config.num_key_value_heads
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * config.intermediate_size  # q, o, k, v, gate/up/down
    matmul_params = layers * per_layer + d * config.vocab_size  # the output layer is a matmul too
    return (4 if mode == "lora" else 6) * matmul_params + 12 * layers * d * mean_length


def peak_flops(override_tflops: float | None) -> float | None:
    import torch

    if override_tflops:
        return override_tflops * 1e12
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):  # "A10G" before "A10"
        if key in name:
            return PEAK_TFLOPS[key] * 1e12
    return None


def reset_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None


def run_baseline(model_dir: Path, rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)  # the checkpoint's dtype (bf16 on a GPU)
    cpu = not torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as out:
        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(
                output_dir=out,
                num_train_epochs=args.epochs,
                per_device_train_batch_size=args.batch,
                learning_rate=args.lr,
                save_strategy="no",
                report_to=[],
                seed=args.seed,
                use_cpu=cpu,
                bf16=not cpu,
                disable_tqdm=True,
                assistant_only_loss="{% generation %}" in (tokenizer.chat_template or ""),
                max_length=args.max_length,
            ),
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=LoraConfig(r=16, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
        )
        tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * args.epochs
        result = trainer.train()
    del trainer, model
    return {"tokens": tokens, "seconds": result.metrics["train_runtime"], "train_loss": result.training_loss}


def run_ours(
    model_dir: Path, rows: list[dict[str, Any]], args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    from storage.config import LocalStoreConfig
    from storage.local import LocalBlobStore
    from trainer.reporter import JsonlReporter
    from trainer.run import run
    from trainer.spec import BaseModelRef, Hyperparameters, JobSpec, LoraSettings

    root = work / "blobs"
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    asyncio.run(LocalBlobStore(root).put_bytes("files/bench/train.jsonl", data))
    spec = JobSpec(
        job_id="ftjob-bench",
        base_model=BaseModelRef(id="bench", source=str(model_dir), max_length=args.max_length),
        mode="lora",
        hyperparameters=Hyperparameters(n_epochs=args.epochs, batch_size=args.batch, learning_rate=args.lr),
        lora=LoraSettings(r=16, alpha=16),
        seed=args.seed,
        storage=LocalStoreConfig(root=root),
        training_file_key="files/bench/train.jsonl",
        output_prefix="jobs/bench/",
        cache_dir=str(work / "cache"),
        logging_steps=10_000,
    )
    started = time.perf_counter()
    summary = run(spec, JsonlReporter(work / "events.jsonl"))
    seconds = summary.get("train_seconds") or time.perf_counter() - started
    return {"tokens": summary["trained_tokens"], "seconds": seconds, "train_loss": summary["train_loss"]}


def measure(shape: Shape, tokenizer_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoConfig, AutoTokenizer

    on_gpu = torch.cuda.is_available()
    rows = long_tailed_chats(args.examples, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(shape, tokenizer_dir, Path(tmp) / "model", on_gpu)
        config = AutoConfig.from_pretrained(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        lengths = [
            len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
            for r in rows
        ]
        mean_length = min(args.max_length, sum(lengths) / len(lengths))
        peak = peak_flops(args.peak_tflops)
        report: dict[str, Any] = {
            "parameters": sum_params(model_dir),
            "mean_tokens_per_example": round(mean_length, 1),
        }
        for side in ("baseline", "ours"):
            reset_memory()
            if side == "baseline":
                done = run_baseline(model_dir, rows, args)
            else:
                done = run_ours(model_dir, rows, args, Path(tmp) / "ours")
            tps = done["tokens"] / done["seconds"]
            report[side] = {
                "tokens_per_second": round(tps, 1),
                "train_seconds": round(done["seconds"], 2),
                "peak_memory_mb": peak_memory_mb(),
                "mfu": float(f"{tps * flops_per_token(config, mean_length, 'lora') / peak:.3g}")
                if peak
                else None,
                "train_loss": round(done["train_loss"], 4),
            }
        report["tokens_per_second_ratio"] = round(
            report["ours"]["tokens_per_second"] / report["baseline"]["tokens_per_second"], 3
        )
    return report


def sum_params(model_dir: Path) -> int:
    from safetensors import safe_open

    total = 0
    for path in model_dir.glob("*.safetensors"):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                n = 1
                for dim in f.get_slice(key).get_shape():
                    n *= dim
                total += n
    return total


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="A tiny shape and a little data: runs on a CPU.")
    parser.add_argument("--shapes", nargs="*", default=None, choices=sorted(SHAPES))
    parser.add_argument("--examples", type=int, default=None, help="Training examples (GPU 512, tiny 16).")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=None, help="Batch size (GPU 8, tiny 4).")
    parser.add_argument(
        "--max-length", type=int, default=None, help="Tokens per example (GPU 1024, tiny 256)."
    )
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="The GPU's peak, if not in the table."
    )
    parser.add_argument("--json", action="store_true", help="Print the report as one JSON line at the end.")
    args = parser.parse_args(argv)
    shapes = args.shapes or (["tiny"] if args.tiny else ["qwen2-0.5b", "qwen2-1.5b"])
    args.examples = args.examples or (16 if args.tiny else 512)
    args.batch = args.batch or (4 if args.tiny else 8)
    args.max_length = args.max_length or (256 if args.tiny else 1024)

    import torch

    from trainer.tiny import build_tiny_chat

    tokenizer_dir = build_tiny_chat(Path(tempfile.gettempdir()) / "ftapi-bench-models")
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "peak_tflops": (peak_flops(args.peak_tflops) or 0) / 1e12 or None,
        "examples": args.examples,
        "epochs": args.epochs,
        "batch_size": args.batch,
        "shapes": {},
    }
    print(f"device {report['device']}, peak {report['peak_tflops'] or 'unknown'} TFLOP/s", flush=True)
    for name in shapes:
        result = measure(SHAPES[name], tokenizer_dir, args)
        report["shapes"][name] = result
        for side in ("baseline", "ours"):
            r = result[side]
            print(
                f"{name:11} {side:8} {r['tokens_per_second']:>10,.0f} tokens/s  peak memory "
                f"{r['peak_memory_mb'] or '-'} MB  MFU {r['mfu'] if r['mfu'] is not None else '-'}",
                flush=True,
            )
        print(f"{name:11} ours / baseline tokens/s: {result['tokens_per_second_ratio']}x", flush=True)
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / ("gpu_train_tiny.json" if args.tiny else "gpu_train.json")).write_text(
        json.dumps(report, indent=2)
    )
    if args.json:
        print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
