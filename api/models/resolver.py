"""Model names → what serving must load. The only way a name reaches an engine.

Names resolve against the catalogue (base models) and this project's succeeded jobs and their
checkpoints, never against paths: the weights are always under the job's own storage prefix.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.catalogue import BaseModelEntry, Catalogue
from api.db.tables import CheckpointPermissionRow, FineTuningJobCheckpointRow, FineTuningJobRow
from api.errors import NotFound, ServerError
from api.fine_tuning.results import job_prefix
from serving.models import ServedModel
from storage import BlobStore, StorageError
from storage.model_folders import fetch_folder, stored_prefix

log = structlog.get_logger()


def model_not_found(name: str) -> NotFound:
    return NotFound(
        f"The model `{name}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def base_model_id(job: FineTuningJobRow) -> str:
    """The catalogue model under a job: its `model`, unless that is a tuned model it continues."""
    return job.base_model or job.model


@dataclass(frozen=True)
class TunedModel:
    """A tuned model of one project: a job's final model or one of its checkpoints."""

    served: ServedModel
    job: FineTuningJobRow
    checkpoint: FineTuningJobCheckpointRow | None


class ModelResolver:
    def __init__(self, catalogue: Catalogue, models_cache: Path, store: BlobStore | None = None) -> None:
        self.catalogue = catalogue
        self._models_cache = models_cache
        self._store = store
        self._base_paths: dict[str, str] = {}
        self._build_lock = asyncio.Lock()

    async def base_path(self, entry: BaseModelEntry) -> str:
        """Where the engines load a base model from. Local directories and hub ids pass through; a
        builtin model is built on first use, by the trainer's code in a child process, so the API
        process never imports the ML stack for it; a model in our storage is fetched once into the
        same cache the local trainers use (whoever comes first fetches it)."""
        if not entry.source.startswith(("builtin:", "storage:")):
            return entry.source
        if entry.id not in self._base_paths:
            async with self._build_lock:
                if entry.id not in self._base_paths:
                    if entry.source.startswith("builtin:"):
                        path = await self._build(entry.source)
                    else:
                        path = await self._fetch(entry)
                    self._base_paths[entry.id] = path
        return self._base_paths[entry.id]

    async def _fetch(self, entry: BaseModelEntry) -> str:
        prefix = stored_prefix(entry.source)
        assert prefix is not None and self._store is not None
        started = time.monotonic()
        try:
            path, fetched = await fetch_folder(self._store, prefix, self._models_cache)
        except StorageError as exc:
            raise ServerError(f"Could not fetch the base model {entry.id} from storage: {exc}") from exc
        if fetched:
            log.info("base_model.fetched", model=entry.id, seconds=round(time.monotonic() - started, 2))
        return str(path)

    async def _build(self, source: str) -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "trainer",
            "base-model",
            "--source",
            source,
            "--cache-dir",
            str(self._models_cache),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        if process.returncode != 0:
            raise ServerError(f"Could not prepare the base model {source}: {err.decode()[-500:]}")
        return out.decode().strip().splitlines()[-1]

    async def base(self, entry: BaseModelEntry) -> ServedModel:
        return ServedModel(
            name=entry.id, base_id=entry.id, base_path=await self.base_path(entry), kind="base"
        )

    async def job_model(self, job: FineTuningJobRow, name: str, weights_prefix: str) -> ServedModel:
        entry = self.catalogue.get(base_model_id(job))
        if entry is None:  # the catalogue no longer offers the job's base model
            raise model_not_found(name)
        return ServedModel(
            name=name,
            base_id=entry.id,
            base_path=await self.base_path(entry),
            kind="lora" if entry.mode == "lora" else "full",
            weights_prefix=weights_prefix,
            lora_rank=entry.lora.r if entry.mode == "lora" else None,
        )

    async def final_model(self, job: FineTuningJobRow, name: str) -> ServedModel:
        return await self.job_model(job, name, job_prefix(job.project_id, job.id) + "model/")

    async def tuned(
        self, session: AsyncSession, project_id: str, name: str, *, shared: bool = True
    ) -> TunedModel | None:
        """A tuned model or checkpoint of `project_id` or, with `shared`, of a project that shares
        it with `project_id` (a checkpoint permission); None if there is no such model for it."""
        found = await self.find(session, project_id, name, shared=shared)
        if found is None:
            return None
        job, checkpoint = found
        if checkpoint is None:  # the job's model, asked for by its name or an alias of it
            return TunedModel(await self.final_model(job, job.fine_tuned_model or name), job, None)
        return TunedModel(await self.job_model(job, name, checkpoint.storage_prefix), job, checkpoint)

    async def find(
        self, session: AsyncSession, project_id: str, name: str, *, shared: bool = True
    ) -> tuple[FineTuningJobRow, FineTuningJobCheckpointRow | None] | None:
        """The job (and checkpoint, for a checkpoint's name) behind a tuned model's name, without
        preparing anything for serving. `shared` as in `tuned`."""
        own = await self._owned(session, project_id, name)
        if own is not None or not shared:
            return own
        owner = await session.scalar(
            select(CheckpointPermissionRow.owner_project_id).where(
                CheckpointPermissionRow.model == name, CheckpointPermissionRow.project_id == project_id
            )
        )
        return await self._owned(session, owner, name) if owner is not None else None

    async def _owned(
        self, session: AsyncSession, project_id: str, name: str
    ) -> tuple[FineTuningJobRow, FineTuningJobCheckpointRow | None] | None:
        job = await session.scalar(
            select(FineTuningJobRow).where(
                FineTuningJobRow.fine_tuned_model == name,
                FineTuningJobRow.project_id == project_id,
                FineTuningJobRow.status == "succeeded",
                FineTuningJobRow.model_deleted_at.is_(None),
            )
        )
        if job is not None:
            return job, None
        found = (
            await session.execute(
                select(FineTuningJobCheckpointRow, FineTuningJobRow)
                .join(FineTuningJobRow, FineTuningJobRow.id == FineTuningJobCheckpointRow.job_id)
                .where(
                    or_(
                        FineTuningJobCheckpointRow.fine_tuned_model_checkpoint == name,
                        FineTuningJobCheckpointRow.announced_name == name,
                    ),
                    FineTuningJobCheckpointRow.model_deleted_at.is_(None),
                    FineTuningJobRow.project_id == project_id,
                )
            )
        ).first()
        if found is None:
            return None
        checkpoint, job = found
        final_name = job.fine_tuned_model
        if final_name is not None and checkpoint.fine_tuned_model_checkpoint == final_name:
            # The final checkpoint is the job's model. Under the name its event announced it is an
            # alias of that model (one set of weights, one engine entry, answers carry the model's
            # name as OpenAI's aliases do); under the model's own name it was not found above, so
            # the model was deleted as a whole.
            if name == final_name or job.model_deleted_at is not None or job.status != "succeeded":
                return None
            return job, None
        return job, checkpoint

    async def resolve(self, session: AsyncSession, project_id: str, name: str) -> ServedModel:
        entry = self.catalogue.get(name)
        if entry is not None:
            return await self.base(entry)
        tuned = await self.tuned(session, project_id, name)
        if tuned is None:
            raise model_not_found(name)
        return tuned.served
