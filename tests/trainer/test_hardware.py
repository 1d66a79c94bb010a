"""The hardware decision: facts about a machine in, training choices out (no GPU needed to test it)."""

from __future__ import annotations

import pytest

from trainer.hardware import Hardware, UnsupportedHardware, detect, gradient_checkpointing, plan
from trainer.spec import TrainingOptions

CPU = Hardware()
T4 = Hardware(cuda=True, bf16=False, gpus=1)  # fp16 only
A100 = Hardware(cuda=True, bf16=True, gpus=1, bitsandbytes=True)
A100_FLASH = Hardware(cuda=True, bf16=True, flash_attn=True, bitsandbytes=True, gpus=8)
AUTO = TrainingOptions()

# (hardware, mode) → (weights dtype, bf16, fp16, attention, padding-free); attention None is
# transformers' default for the architecture (sdpa, or eager where sdpa is not supported).
CASES = [
    (CPU, "lora", ("float32", False, False, None, False)),
    (CPU, "full", ("float32", False, False, None, False)),
    (T4, "lora", ("float16", False, True, None, False)),
    (T4, "full", ("float32", False, True, None, False)),  # fp16 autocast over fp32 master weights
    (A100, "lora", ("bfloat16", True, False, None, False)),
    (A100, "full", ("bfloat16", True, False, None, False)),
    (A100_FLASH, "lora", ("bfloat16", True, False, "flash_attention_2", True)),
]


@pytest.mark.parametrize(("hw", "mode", "want"), CASES)
def test_precision_and_attention_follow_the_hardware(
    hw: Hardware, mode: str, want: tuple[object, ...]
) -> None:
    p = plan(AUTO, hw, mode)  # type: ignore[arg-type]
    assert (p.dtype, p.bf16, p.fp16, p.attn_implementation, p.padding_free) == want
    assert p.use_cpu is not hw.cuda
    assert p.load_in_4bit is False


def test_catalogue_settings_win_where_the_hardware_allows() -> None:
    eager = plan(TrainingOptions(attn_implementation="eager"), A100_FLASH, "lora")
    assert eager.attn_implementation == "eager" and eager.padding_free is False
    padded = plan(TrainingOptions(padding_free=False), A100_FLASH, "lora")
    assert padded.attn_implementation == "flash_attention_2" and padded.padding_free is False
    assert plan(TrainingOptions(quantization="4bit"), A100, "lora").load_in_4bit is True


@pytest.mark.parametrize(
    ("options", "hw", "mode", "message"),
    [
        (
            TrainingOptions(quantization="4bit"),
            CPU,
            "lora",
            "needs a CUDA GPU and the bitsandbytes package; this trainer has no CUDA GPU",
        ),
        (TrainingOptions(quantization="4bit"), T4, "lora", "no bitsandbytes"),
        (TrainingOptions(quantization="4bit"), A100, "full", "LoRA adapters only"),
        (TrainingOptions(attn_implementation="flash_attention_2"), A100, "lora", "flash_attn package"),
        (TrainingOptions(padding_free=True), CPU, "lora", "padding_free needs a CUDA GPU"),
    ],
)
def test_what_the_hardware_cannot_do_is_refused(
    options: TrainingOptions, hw: Hardware, mode: str, message: str
) -> None:
    with pytest.raises(UnsupportedHardware, match=message):
        plan(options, hw, mode)  # type: ignore[arg-type]


def test_gradient_checkpointing_defaults_on_for_big_models() -> None:
    assert gradient_checkpointing(AUTO, 7_000_000_000) is True
    assert gradient_checkpointing(AUTO, 500_000_000) is False
    assert gradient_checkpointing(TrainingOptions(gradient_checkpointing=True), 1_000) is True
    assert gradient_checkpointing(TrainingOptions(gradient_checkpointing=False), 70_000_000_000) is False


def test_this_machine_is_detected_as_what_it_is() -> None:
    """The CPU path is the one that really runs here (the trainer tests train with it)."""
    import torch

    hw = detect()
    assert hw.cuda is torch.cuda.is_available()
    if not hw.cuda:
        assert plan(AUTO, hw, "lora") == plan(AUTO, CPU, "lora")
