"""How to train on the hardware at hand: precision, attention, padding-free batches, gradient
checkpointing, 4-bit loading. A pure decision (facts in, choices out), so it is tested without a
GPU; `detect()` reads the facts (imports torch: the trainer only).

- Precision: bf16 where the GPU supports it, else fp16 with a gradient scaler, fp32 on a CPU.
  Weights load in that dtype, except a full fine-tune in fp16 (fp16 master weights cannot be
  unscaled: the weights stay fp32 and fp16 is autocast).
- Attention: FlashAttention 2 on CUDA where `flash_attn` is installed, else transformers' default
  (sdpa where the architecture supports it; Gemma 2 does not, its soft-capping needs eager).
  Padding-free batches only with FlashAttention (varlen kernels; on a CPU they ran slower).
- Gradient checkpointing: on for models of a billion parameters and more, unless the catalogue says.
- QLoRA (4-bit NF4 with bitsandbytes): only for LoRA, only on CUDA; refused elsewhere.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal

from trainer.spec import TrainingOptions

BIG_MODEL_PARAMETERS = 1_000_000_000  # checkpointing pays for itself from here (activations dominate)


class UnsupportedHardware(ValueError):
    """The catalogue asks for something this machine cannot do (the message says what)."""


@dataclass(frozen=True)
class Hardware:
    cuda: bool = False
    bf16: bool = False  # the GPU computes in bf16 (Ampere and newer)
    flash_attn: bool = False  # the flash_attn package is installed
    bitsandbytes: bool = False
    gpus: int = 0


@dataclass(frozen=True)
class Plan:
    dtype: Literal["float32", "bfloat16", "float16"]  # weights are loaded in this
    bf16: bool  # TrainingArguments' mixed-precision flags
    fp16: bool
    use_cpu: bool
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None  # None: transformers' choice
    padding_free: bool
    load_in_4bit: bool


def plan(options: TrainingOptions, hw: Hardware, mode: Literal["lora", "full"]) -> Plan:
    if options.quantization == "4bit":
        if mode != "lora":
            raise UnsupportedHardware("4-bit loading (QLoRA) trains LoRA adapters only, not full fine-tunes")
        if not hw.cuda or not hw.bitsandbytes:
            raise UnsupportedHardware(
                "QLoRA (quantization: 4bit) needs a CUDA GPU and the bitsandbytes package; this trainer has "
                + ("no CUDA GPU" if not hw.cuda else "no bitsandbytes")
            )
    if not hw.cuda:
        precision: Literal["float32", "bfloat16", "float16"] = "float32"
    else:
        precision = "bfloat16" if hw.bf16 else "float16"
    dtype = "float32" if precision == "float16" and mode == "full" else precision
    attn = options.attn_implementation
    if attn is None and hw.cuda and hw.flash_attn:
        attn = "flash_attention_2"
    elif attn == "flash_attention_2" and not (hw.cuda and hw.flash_attn):
        raise UnsupportedHardware(
            "attn_implementation flash_attention_2 needs a CUDA GPU and the flash_attn package"
        )
    padding_free = hw.cuda and attn == "flash_attention_2" and options.padding_free is not False
    if options.padding_free and not padding_free:
        raise UnsupportedHardware("padding_free needs a CUDA GPU with FlashAttention 2")
    return Plan(
        dtype=dtype,
        bf16=precision == "bfloat16",
        fp16=precision == "float16",
        use_cpu=not hw.cuda,
        attn_implementation=attn,
        padding_free=padding_free,
        load_in_4bit=options.quantization == "4bit",
    )


def gradient_checkpointing(options: TrainingOptions, n_parameters: int) -> bool:
    if options.gradient_checkpointing is not None:
        return options.gradient_checkpointing
    return n_parameters >= BIG_MODEL_PARAMETERS


def detect() -> Hardware:
    import torch

    cuda = torch.cuda.is_available()
    return Hardware(
        cuda=cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        flash_attn=importlib.util.find_spec("flash_attn") is not None,
        bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None,
        gpus=torch.cuda.device_count() if cuda else 0,
    )
