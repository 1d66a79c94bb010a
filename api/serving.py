"""The serving engines this process uses, built from settings (serving/ knows nothing of settings)."""

from __future__ import annotations

from api.catalogue import BaseModelEntry, Catalogue
from api.models.resolver import ModelResolver
from api.settings import Settings
from serving.cache import WeightsCache
from serving.engine import InferenceEngine
from serving.registry import ServingRegistry
from serving.transformers_engine import TransformersEngine
from serving.vllm import start_vllm_engine
from storage import BlobStore


def vllm_base(settings: Settings, catalogue: Catalogue) -> BaseModelEntry:
    """The catalogue model the vLLM server serves; its LoRA adapters go there too."""
    wanted = settings.vllm.base_model
    entry = catalogue.get(wanted) if wanted else next(iter(catalogue.all()), None)
    if entry is None:
        raise ValueError(f"FTAPI_VLLM__BASE_MODEL={wanted!r} is not in the model catalogue")
    return entry


async def build_serving(settings: Settings, resolver: ModelResolver, store: BlobStore) -> ServingRegistry:
    serving_dir = settings.data_dir.resolve() / "serving"
    cache = WeightsCache(serving_dir / "weights", store)
    engines: list[InferenceEngine] = []
    if settings.engine == "vllm":
        entry = vllm_base(settings, resolver.catalogue)
        base_path = await resolver.base_path(entry)
        # Not waiting for a managed server (about a minute): files and jobs work meanwhile, chat
        # answers 503 until it is up, and /ready shows it starting.
        engines.append(await start_vllm_engine(settings.vllm, entry.id, base_path, cache.root, wait=False))
    # In-process engine last: it serves what the vLLM server does not (full fine-tunes, other
    # base models), and imports torch only when a model is first loaded.
    engines.append(TransformersEngine(max_loaded_adapters=settings.max_loaded_adapters))
    return ServingRegistry(engines, cache)
