"""A hardware plan (trainer/hardware.py) as arguments for from_pretrained and TrainingArguments."""

from __future__ import annotations

from typing import Any

from trainer.hardware import Plan


def load_kwargs(plan: Plan) -> dict[str, Any]:
    """Weights in the plan's dtype, with its attention implementation (and 4-bit NF4 for QLoRA)."""
    import torch

    kwargs: dict[str, Any] = {"dtype": getattr(torch, plan.dtype)}
    if plan.attn_implementation is not None:
        kwargs["attn_implementation"] = plan.attn_implementation
    if plan.load_in_4bit:
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if plan.bf16 else torch.float16
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
    return kwargs


def precision_args(plan: Plan) -> dict[str, Any]:
    """bf16/fp16 mixed precision (fp16 brings the Trainer's gradient scaler), or the CPU."""
    args: dict[str, Any] = {"use_cpu": plan.use_cpu, "bf16": plan.bf16, "fp16": plan.fp16}
    # Non-reentrant checkpointing works with frozen embeddings (LoRA) without enable_input_require_grads.
    args["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
    return args
