"""The base-model catalogue: which models can be fine-tuned here, from where, and with what defaults.

Two parts, merged: the file `FTAPI_MODELS_FILE` (JSON or YAML; without one, only the offline
`tiny-chat` is offered) and the models imported into ftapi's own storage (`ftapi models import`,
storage/model_folders.py), each of which carries its entry in its manifest. The file wins when both
name the same id. Stored entries are read at start and refreshed by `keep_refreshed`, so an import
shows up in running servers without a restart. Ids may contain '/', as Hugging Face ids do.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Literal

import structlog
import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from api.model_templates import TemplateCheck, check_source
from storage import BlobStore
from storage.model_folders import UnsafeModelFolder, stored_manifests, stored_prefix
from trainer.spec import LoraSettings, TrainingOptions

log = structlog.get_logger()


class BaseModelEntry(BaseModel):
    id: str
    source: str = Field(
        description="builtin:tiny-chat, storage:base-models/<folder>/ (imported into ftapi's storage), "
        "a local directory, or a Hugging Face repo id"
    )
    methods: list[Literal["supervised", "dpo"]] = ["supervised", "dpo"]
    mode: Literal["lora", "full"] = "lora"
    max_length: int = 2048
    base_learning_rate: float = Field(gt=0, description="multiplied by learning_rate_multiplier")
    default_batch_size: int = Field(default=8, ge=1, le=256)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    created: int = Field(default=0, description="Unix time the base model was published (0: unknown).")
    fsdp: bool = Field(
        default=False, description="Full fine-tuning on several GPUs shards the model (FSDP) instead of DDP."
    )
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
        self._stored: dict[str, BaseModelEntry] = {}
        self._templates = {e.id: check_source(e.id, e.source) for e in entries}
        # Models in storage are checked when imported; the check travels in their manifest.
        self._stored_templates: dict[str, TemplateCheck] = {}  # by storage prefix

    @classmethod
    def load(cls, path: Path | None) -> Catalogue:
        """The file part alone (no storage)."""
        if path is None:
            return cls([TINY_CHAT])
        text = path.read_text()
        raw = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        items = raw.get("models", raw) if isinstance(raw, dict) else raw
        return cls([BaseModelEntry.model_validate(item) for item in items])

    async def refresh(self, store: BlobStore) -> None:
        """Read the entries of the models imported into storage again (the file part stays)."""
        stored = {}
        templates = {}
        for manifest in await stored_manifests(store):
            try:
                entry = BaseModelEntry.model_validate(manifest["entry"])
                prefix = stored_prefix(entry.source)
            except (ValidationError, KeyError, TypeError, UnsafeModelFolder) as exc:
                log.warning("catalogue.stored_entry_invalid", model=manifest.get("id"), error=str(exc)[:300])
                continue
            if prefix is not None:  # a file entry may name the same folder: it shares the check
                templates[prefix] = TemplateCheck.from_manifest(manifest.get("template_check"))
            if entry.id in self._entries:
                log.warning("catalogue.stored_entry_shadowed", model=entry.id)
                continue
            stored[entry.id] = entry
        self._stored = stored
        self._stored_templates = templates

    def get(self, model_id: str) -> BaseModelEntry | None:
        return self._entries.get(model_id) or self._stored.get(model_id)

    def template(self, model_id: str) -> TemplateCheck:
        """Whether the model's chat template can be trained (checked once, at load or at import)."""
        entry = self.get(model_id)
        prefix = _prefix_or_none(entry.source) if entry is not None else None
        if prefix is not None:
            return self._stored_templates.get(prefix, TemplateCheck())
        return self._templates.get(model_id, TemplateCheck())

    def all(self) -> list[BaseModelEntry]:
        return list(self._entries.values()) + sorted(self._stored.values(), key=lambda e: e.id)


def _prefix_or_none(source: str) -> str | None:
    try:
        return stored_prefix(source)
    except UnsafeModelFolder:  # the resolver refuses it when a job or the engine needs it
        return None


async def load_catalogue(path: Path | None, store: BlobStore) -> Catalogue:
    """The whole catalogue: the file's entries, then the models imported into storage."""
    catalogue = Catalogue.load(path)
    await catalogue.refresh(store)
    return catalogue


async def keep_refreshed(catalogue: Catalogue, store: BlobStore, interval_seconds: float) -> None:
    """Pick up models imported (or removed) while this process runs; a failed read keeps the last."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await catalogue.refresh(store)
        except Exception as exc:  # storage down for a moment: keep serving what we know
            log.warning("catalogue.refresh_failed", error=type(exc).__name__)
