"""What the API knows, without torch, about the hardware its trainers get: whether they have CUDA.

Catalogue options that need a GPU (QLoRA, FlashAttention, padding-free batches) are refused at job
creation when no trainer would have one, instead of failing in the trainer after dispatch. The
containers' GPUs are what the executor asks for; a local trainer has CUDA if this machine has an
NVIDIA driver.
"""

from __future__ import annotations

from pathlib import Path

from api.catalogue import BaseModelEntry
from api.settings import Settings

NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


def trainers_have_cuda(settings: Settings) -> bool:
    if settings.executor == "docker":
        return settings.docker is not None and settings.docker.gpus != 0
    if settings.executor == "kubernetes":
        return settings.kubernetes is not None and settings.kubernetes.gpus > 0
    return NVIDIA_DRIVER.exists()


def needs_cuda(entry: BaseModelEntry) -> str | None:
    """The catalogue option of `entry` that needs a CUDA GPU, described, or None."""
    options = entry.training
    if options.quantization == "4bit":
        return "QLoRA (training.quantization: 4bit, bitsandbytes)"
    if options.attn_implementation == "flash_attention_2":
        return "FlashAttention 2 (training.attn_implementation)"
    if options.padding_free:
        return "padding-free batches (training.padding_free)"
    return None
