"""Training throughput: ftapi's trainer against a plain TRL SFTTrainer script, in one run.

    .venv/bin/python -m bench.train [--examples 480 --epochs 2 --repeat 1]

Both sides train tiny-chat (built locally, no download) with the same LoRA settings, data,
hyperparameters, seed, assistant-only loss and max_length, on a deterministic long-tailed chat set
(most answers a few words, a tail of long ones, as real support or extraction data looks):
  baseline  trl.SFTTrainer as its docs show it (random batches, padded to the longest row)
  ours      trainer.sft.LengthGroupedSFTTrainer, what `python -m trainer run` uses
Reported: real (unpadded) tokens per second of training (train_runtime, model load excluded), the
padding share of the batches, and the loss of each trained model on a held-out set (the quality
check: faster must not mean worse). Then job start overhead through a real `ftapi serve` with the
local executor: create → queued (file validation) → running (dispatch) → the trainer's first event
(process start, imports, model load) → first metrics event.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path
from typing import Any

WORDS = (
    "order refund shipping late broken great love price quality support agent ticket please thanks "
    "account password reset invoice delivery address product service phone app update label"
).split()


def long_tailed_chats(n: int, seed: int) -> list[dict[str, Any]]:
    """Short prompts; answers whose length in words is log-normal (median ~10, tail to ~300)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
        words = min(300, max(1, int(rng.lognormvariate(2.3, 1.1))))
        answer = " ".join(rng.choice(WORDS) for _ in range(words))
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "Answer the customer."},
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
    return rows


def train_once(
    kind: str, model_dir: Path, rows: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    from trainer.batching import LengthGroupedBatches, padding_share
    from trainer.sft import LengthGroupedSFTTrainer
    from trainer.sft_rows import ChatEncoder

    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    cls = SFTTrainer if kind == "baseline" else LengthGroupedSFTTrainer
    with tempfile.TemporaryDirectory() as out:
        trainer = cls(
            model=model,
            args=SFTConfig(
                output_dir=out,
                num_train_epochs=args.epochs,
                per_device_train_batch_size=args.batch,
                learning_rate=5e-3,
                logging_steps=10,
                save_strategy="no",
                report_to=[],
                seed=args.seed,
                data_seed=args.seed,
                use_cpu=not torch.cuda.is_available(),
                bf16=False,
                disable_tqdm=True,
                max_length=512,
            ),
            # Both sides get the same pre-tokenized rows with ftapi's assistant mask (TRL's own
            # assistant_only_loss needs {% generation %} markers that real templates lack).
            train_dataset=Dataset.from_list(ChatEncoder(tokenizer, 512).rows([r["messages"] for r in rows])),
            processing_class=tokenizer,
            peft_config=LoraConfig(r=16, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
        )
        lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
        if kind == "baseline":
            order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(args.seed)).tolist()
        else:
            order = list(LengthGroupedBatches(lengths, args.batch, args.seed))
        batches = [order[i : i + args.batch] for i in range(0, len(order), args.batch)]
        result = trainer.train()
    return {
        "model": trainer.model,
        "tokenizer": tokenizer,
        "seconds": result.metrics["train_runtime"],
        "tokens": sum(lengths) * args.epochs,
        "padding": padding_share(lengths, batches),
        "train_loss": result.training_loss,
    }


def held_out_loss(run: dict[str, Any], rows: list[dict[str, Any]]) -> float:
    from trainer.evaluate import encode, token_metrics
    from trainer.sft_rows import ChatEncoder

    chat = ChatEncoder(run["tokenizer"], 512)
    encoded = [encode(chat, r["messages"]) for r in rows]
    return token_metrics(run["model"], run["tokenizer"], encoded, 8).loss


def start_overhead(model_cache: Path) -> dict[str, float]:
    from bench.job_start import link_models, time_job_start

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "srv"
        link_models(data, model_cache)  # tiny-chat is already built: model load is what remains
        return time_job_start(data, {})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=480)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="Runs per side; the fastest counts.")
    args = parser.parse_args()

    from trainer.tiny import build_tiny_chat

    cache = Path(tempfile.gettempdir()) / "ftapi-bench-models"
    model_dir = build_tiny_chat(cache)
    rows = long_tailed_chats(args.examples, args.seed)
    held_out = long_tailed_chats(64, args.seed + 1)

    report: dict[str, Any] = {"examples": args.examples, "epochs": args.epochs, "batch_size": args.batch}
    for kind in ("baseline", "ours"):
        runs = [train_once(kind, model_dir, rows, args) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["seconds"])
        report[kind] = {
            "tokens_per_second": round(best["tokens"] / best["seconds"], 1),
            "train_seconds": round(best["seconds"], 2),
            "padding_share": round(best["padding"], 3),
            "train_loss": round(best["train_loss"], 4),
            "held_out_loss": round(held_out_loss(best, held_out), 4),
        }
        print(kind, json.dumps(report[kind]), flush=True)
    base, ours = report["baseline"], report["ours"]
    report["speedup"] = round(ours["tokens_per_second"] / base["tokens_per_second"], 2)
    report["held_out_loss_delta"] = round(ours["held_out_loss"] / base["held_out_loss"] - 1, 4)
    print(f"tokens/s: ours {report['speedup']}x the plain TRL script (goal >= 1.5x)")
    print(f"held-out loss: ours {report['held_out_loss_delta']:+.2%} against the baseline (goal within 5 %)")

    marks = start_overhead(cache)
    report["start_overhead_seconds"] = {k: round(v, 2) for k, v in marks.items()}
    print(
        "job start (seconds from create): queued {queued:.2f}, running {running:.2f}, trainer up "
        "(process + imports + model load) {trainer_up:.2f}, first metrics {first_metrics:.2f}".format(**marks)
    )
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "train.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
