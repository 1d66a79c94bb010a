"""The catalogue: the file's entries plus the models imported into storage, and how many trainer
processes a job gets from the executor's GPUs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api.catalogue import load_catalogue
from api.dispatch.factory import trainer_processes
from api.settings import Settings
from storage.local import LocalBlobStore
from storage.model_folders import MANIFEST


async def stored(store: LocalBlobStore, folder: str, entry: dict[str, object]) -> None:
    manifest = {"id": entry.get("id"), "entry": entry, "files": []}
    await store.put_bytes(f"base-models/{folder}/{MANIFEST}", json.dumps(manifest).encode())


async def test_stored_models_join_the_file_which_wins_on_a_clash(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    models = tmp_path / "models.json"
    models.write_text(json.dumps([{"id": "a", "source": "builtin:tiny-chat", "base_learning_rate": 1e-3}]))
    entry = {"source": "storage:base-models/x/", "base_learning_rate": 1e-4}
    await stored(store, "b", {**entry, "id": "b"})
    await stored(store, "a", {**entry, "id": "a"})  # shadowed by the file's entry
    await stored(store, "bad", {"id": "bad", "source": "storage:base-models/bad/"})  # no learning rate
    await store.put_bytes("base-models/c/model.safetensors", b"an import that did not finish")

    catalogue = await load_catalogue(models, store)
    assert [e.id for e in catalogue.all()] == ["a", "b"]
    assert catalogue.get("a") is not None and catalogue.get("a").source == "builtin:tiny-chat"  # type: ignore[union-attr]

    await stored(store, "d", {**entry, "id": "d"})
    await catalogue.refresh(store)
    assert [e.id for e in catalogue.all()] == ["a", "b", "d"]


@pytest.mark.parametrize(
    ("env", "processes"),
    [
        ({}, 1),
        ({"FTAPI_TRAINER_PROCESSES": "2"}, 2),
        ({"FTAPI_EXECUTOR": "docker", "FTAPI_DOCKER__GPUS": "4"}, 4),
        ({"FTAPI_EXECUTOR": "docker", "FTAPI_DOCKER__GPUS": "-1"}, 0),  # all: the trainer counts them
        ({"FTAPI_EXECUTOR": "kubernetes", "FTAPI_KUBERNETES__GPUS": "8"}, 8),
        ({"FTAPI_EXECUTOR": "kubernetes", "FTAPI_KUBERNETES__GPUS": "8", "FTAPI_TRAINER_PROCESSES": "1"}, 1),
        ({"FTAPI_EXECUTOR": "local", "FTAPI_DOCKER__GPUS": "4"}, 1),
    ],
)
def test_trainer_processes_follow_the_executors_gpus(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], processes: int
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert trainer_processes(Settings()) == processes
