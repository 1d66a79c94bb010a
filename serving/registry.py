"""Which engine serves a model, with its weights fetched from storage into the local cache first."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from serving.cache import WeightsCache
from serving.engine import InferenceEngine
from serving.errors import EngineRequestError
from serving.models import LocalModel, ModelKind, ServedModel

PROBE_REQUEST: dict[str, Any] = {
    "messages": [{"role": "user", "content": "ping"}],
    "max_completion_tokens": 1,
    "temperature": 0,
}


class ServingRegistry:
    """The engines in order of preference: a model goes to the first one that serves it."""

    def __init__(self, engines: Sequence[InferenceEngine], cache: WeightsCache) -> None:
        self.engines = list(engines)
        self.cache = cache

    async def localize(self, model: ServedModel) -> LocalModel:
        weights = await self.cache.materialize(model.weights_prefix) if model.weights_prefix else None
        return LocalModel(
            name=model.name,
            base_id=model.base_id,
            base_path=model.base_path,
            kind=model.kind,
            weights_dir=weights,
            lora_rank=model.lora_rank,
        )

    def engine_name(self, base_id: str, kind: ModelKind, lora_rank: int | None = None) -> str | None:
        """The engine a model of this shape would go to, decided without fetching its weights."""
        shape = LocalModel(name="", base_id=base_id, base_path="", kind=kind, lora_rank=lora_rank)
        return next((engine.name for engine in self.engines if engine.serves(shape)), None)

    def engine_for(self, model: LocalModel) -> InferenceEngine:
        for engine in self.engines:
            if engine.serves(model):
                return engine
        raise EngineRequestError(
            f"The model `{model.name}` cannot be served by this deployment's engines.",
            param="model",
            code="model_not_available",
        )

    async def chat(self, model: ServedModel, body: dict[str, Any]) -> dict[str, Any]:
        local = await self.localize(model)
        return await self.engine_for(local).chat(local, body)

    async def chat_stream(self, model: ServedModel, body: dict[str, Any]) -> AsyncIterator[bytes]:
        local = await self.localize(model)
        return self.engine_for(local).chat_stream(local, body)

    async def probe(self, model: ServedModel) -> None:
        """Load `model` and complete one token: a model that cannot answer is not a finished model."""
        local = await self.localize(model)
        engine = self.engine_for(local)
        await engine.load(local)
        await engine.chat(local, {**PROBE_REQUEST, "model": local.name})

    async def unload(self, model: ServedModel) -> None:
        for engine in self.engines:
            await engine.unload(model.name)
        if model.weights_prefix:
            await self.cache.evict(model.weights_prefix)

    async def ready(self) -> dict[str, bool]:
        return {engine.name: await engine.ready() for engine in self.engines}

    async def aclose(self) -> None:
        for engine in self.engines:
            await engine.aclose()
