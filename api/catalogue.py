"""The base-model catalogue: which models can be fine-tuned here, from where, and with what defaults.

Configured as a JSON or YAML file (`FTAPI_MODELS_FILE`); without one, only the offline `tiny-chat`
is offered. Ids may contain '/', as Hugging Face ids do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, model_validator

from api.model_templates import TemplateCheck, check_source
from trainer.spec import LoraSettings, TrainingOptions


class BaseModelEntry(BaseModel):
    id: str
    source: str = Field(description="builtin:tiny-chat, a local directory, or a Hugging Face repo id")
    methods: list[Literal["supervised", "dpo"]] = ["supervised", "dpo"]
    mode: Literal["lora", "full"] = "lora"
    max_length: int = 2048
    base_learning_rate: float = Field(gt=0, description="multiplied by learning_rate_multiplier")
    default_batch_size: int = Field(default=8, ge=1, le=256)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    created: int = Field(default=0, description="Unix time the base model was published (0: unknown).")
    training: TrainingOptions = Field(default_factory=TrainingOptions)

    @model_validator(mode="after")
    def _quantization_is_lora_only(self) -> BaseModelEntry:
        if self.training.quantization is not None and self.mode != "lora":
            raise ValueError(f"{self.id}: training.quantization (QLoRA) needs mode: lora")
        return self


TINY_CHAT = BaseModelEntry(
    id="tiny-chat", source="builtin:tiny-chat", max_length=512, base_learning_rate=5e-3, default_batch_size=8
)


class Catalogue:
    def __init__(self, entries: list[BaseModelEntry]) -> None:
        self._entries = {e.id: e for e in entries}
        self._templates = {e.id: check_source(e.id, e.source) for e in entries}

    @classmethod
    def load(cls, path: Path | None) -> Catalogue:
        if path is None:
            return cls([TINY_CHAT])
        text = path.read_text()
        raw = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        items = raw.get("models", raw) if isinstance(raw, dict) else raw
        return cls([BaseModelEntry.model_validate(item) for item in items])

    def get(self, model_id: str) -> BaseModelEntry | None:
        return self._entries.get(model_id)

    def template(self, model_id: str) -> TemplateCheck:
        """Whether the model's chat template can be trained (checked once, at load)."""
        return self._templates.get(model_id, TemplateCheck())

    def all(self) -> list[BaseModelEntry]:
        return list(self._entries.values())
