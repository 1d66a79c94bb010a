"""Wire models of /v1/models, named as in openai-python (`Model`, `ModelDeleted`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    # ftapi extension (OpenAI's schema allows extra keys; the SDK keeps them as attributes).
    served_by: str | None = Field(
        default=None, description="ftapi: the engine that answers chat for this model (vllm, transformers)."
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class ModelDeleted(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool
