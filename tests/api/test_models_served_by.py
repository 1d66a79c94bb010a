"""`served_by` on models: the engine a model would go to, decided without fetching its weights.

The engines are the real classes; neither is asked to load anything (the vLLM one points at a port
nothing listens on, and is never called).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from api.catalogue import TINY_CHAT, BaseModelEntry, Catalogue
from api.models.router import served_by
from serving.cache import WeightsCache
from serving.registry import ServingRegistry
from serving.transformers_engine import TransformersEngine
from serving.vllm import VllmEngine
from storage.local import LocalBlobStore
from trainer.spec import LoraSettings

WIDE = BaseModelEntry(
    id="tiny-wide", source="builtin:tiny-chat", base_learning_rate=1e-3, lora=LoraSettings(r=64)
)
FULL = BaseModelEntry(id="tiny-full", source="builtin:tiny-chat", base_learning_rate=1e-3, mode="full")


@pytest.fixture
def registry(tmp_path: Path) -> ServingRegistry:
    vllm = VllmEngine("http://127.0.0.1:9", "tiny-chat", max_lora_rank=16)
    cache = WeightsCache(tmp_path / "weights", LocalBlobStore(tmp_path / "blobs"))
    return ServingRegistry([vllm, TransformersEngine(max_loaded_adapters=1)], cache)


@pytest.mark.parametrize(
    ("model", "base", "engine"),
    [
        ("tiny-chat", "tiny-chat", "vllm"),  # vLLM's own base model
        ("ft:tiny-chat:p:s:abc", "tiny-chat", "vllm"),  # a LoRA adapter within its rank limit
        ("tiny-wide", "tiny-wide", "transformers"),  # another base model
        ("ft:tiny-wide:p:s:abc", "tiny-wide", "transformers"),
        ("ft:tiny-full:p:s:abc", "tiny-full", "transformers"),  # a full fine-tune
        ("ft:gone:p:s:abc", "gone", None),  # a base the catalogue no longer offers
    ],
)
def test_served_by_names_the_engine_that_would_answer(
    registry: ServingRegistry, model: str, base: str, engine: str | None
) -> None:
    assert served_by(registry, Catalogue([TINY_CHAT, WIDE, FULL]), model, base) == engine


def test_an_adapter_over_the_vllm_rank_limit_goes_to_transformers(registry: ServingRegistry) -> None:
    assert registry.engine_name("tiny-chat", "lora", 16) == "vllm"
    assert registry.engine_name("tiny-chat", "lora", 32) == "transformers"
