"""`ftapi models import`: a local Hugging Face folder into ftapi's storage and its catalogue.

The imported folder carries its catalogue entry in its manifest (storage/model_folders.py), so every
API replica and worker sharing that storage offers the model, without a catalogue file to edit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.catalogue import BaseModelEntry, Catalogue
from api.model_templates import TemplateCheck, check_source
from api.settings import Settings
from storage.factory import build_store
from storage.model_folders import import_folder

DEFAULT_MAX_LENGTH = 2048


class ImportRefused(Exception):
    """The folder or the options cannot be imported; the message says what to change."""


@dataclass(frozen=True)
class ImportedModel:
    entry: BaseModelEntry  # as servers will read it
    template: TemplateCheck  # recorded in the manifest: job creation refuses an untrainable template


def catalogue_entry(folder: Path, model_id: str, options: dict[str, Any]) -> BaseModelEntry:
    """The entry an import stores: the options given, a max_length the model's positions allow."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ImportRefused(f"{folder} has no config.json: is it a Hugging Face model folder?")
    config = json.loads(config_path.read_text())
    fields = {k: v for k, v in options.items() if v is not None}
    if "max_length" not in fields:
        fields["max_length"] = min(
            DEFAULT_MAX_LENGTH, int(config.get("max_position_embeddings") or DEFAULT_MAX_LENGTH)
        )
    if "base_learning_rate" not in fields:  # the usual starting points for LoRA and for full tuning
        fields["base_learning_rate"] = 1e-5 if fields.get("mode") == "full" else 1e-4
    lora_r = fields.pop("lora_r", None)
    if lora_r is not None:
        fields["lora"] = {"r": lora_r, "alpha": lora_r}
    return BaseModelEntry.model_validate({**fields, "id": model_id, "source": "storage:"})


async def import_model(
    settings: Settings, folder: Path, model_id: str, options: dict[str, Any]
) -> ImportedModel:
    """Upload `folder` as `model_id`, with the check of its chat template (done here, where the
    folder is local: servers never hold a stored model's files until a job or the engine needs them).

    A model with an untrainable template is imported all the same: it can still be served.
    Raises ImportRefused, storage.model_folders.UnsafeModelFolder or ModelExists."""
    if Catalogue.load(settings.models_file).get(model_id) is not None:
        raise ImportRefused(f"The catalogue file already offers a model named {model_id}.")
    entry = catalogue_entry(folder, model_id, options)
    template = check_source(model_id, str(folder))
    store = build_store(settings.store_config)
    try:
        manifest = await import_folder(
            store,
            folder,
            model_id,
            entry.model_dump(exclude={"id", "source"}),
            annotations={"template_check": template.to_manifest()},
        )
    finally:
        await store.close()
    return ImportedModel(BaseModelEntry.model_validate(manifest["entry"]), template)
