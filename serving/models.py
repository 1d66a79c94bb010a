"""What an engine is asked to serve: a named model, its base, and where its own weights are."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ModelKind = Literal["base", "lora", "full"]


@dataclass(frozen=True)
class ServedModel:
    """A model name resolved by the API: only names of our own catalogue and jobs ever become one.

    `weights_prefix` is a storage prefix our trainer wrote (an adapter for `lora`, a whole model
    for `full`, None for `base`); engines never see it, they get a `LocalModel`.
    """

    name: str  # what clients send and get back: "tiny-chat", "ft:tiny-chat:proj:sfx:abc12345"
    base_id: str  # catalogue id of the base model
    base_path: str  # local directory (or hub id) of the base model's weights
    kind: ModelKind
    weights_prefix: str | None = None
    lora_rank: int | None = None


@dataclass(frozen=True)
class LocalModel:
    """A ServedModel whose own weights are in the local cache (safetensors and configs only)."""

    name: str
    base_id: str
    base_path: str
    kind: ModelKind
    weights_dir: Path | None = None  # None for a base model
    lora_rank: int | None = None

    @property
    def model_path(self) -> str:
        """The directory a full model loads from: its own weights, or the base for a base model."""
        return str(self.weights_dir) if self.kind == "full" and self.weights_dir else self.base_path
