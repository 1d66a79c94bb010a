"""HTTP for /v1/models."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from sqlalchemy import select, update

from api.catalogue import Catalogue
from api.db.tables import CheckpointPermissionRow, FineTuningJobCheckpointRow, FineTuningJobRow
from api.deps import PrincipalDep, SessionDep, SettingsDep
from api.errors import PermissionDenied
from api.models.resolver import ModelResolver, model_not_found
from api.models.schemas import Model, ModelDeleted, ModelList
from serving.registry import ServingRegistry

router = APIRouter(prefix="/v1/models", tags=["models"])

BASE_OWNER = "system"
ModelName = Annotated[str, Path(description="A base model id or a fine-tuned model name (ft:...).")]


def get_resolver(request: Request) -> ModelResolver:
    return request.app.state.resolver  # type: ignore[no-any-return]


def get_registry(request: Request) -> ServingRegistry:
    return request.app.state.serving  # type: ignore[no-any-return]


ResolverDep = Annotated[ModelResolver, Depends(get_resolver)]
RegistryDep = Annotated[ServingRegistry, Depends(get_registry)]


def served_by(registry: ServingRegistry, catalogue: Catalogue, model: str, base: str) -> str | None:
    """Which engine answers for `model` (a base id, or a tuned model of the base `base`)."""
    entry = catalogue.get(base)
    if entry is None:
        return None
    if model == base:
        return registry.engine_name(base, "base")
    if entry.mode == "lora":
        return registry.engine_name(base, "lora", entry.lora.r)
    return registry.engine_name(base, "full")


@router.get("", response_model=ModelList)
async def list_models(
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    resolver: ResolverDep,
    registry: RegistryDep,
) -> ModelList:
    """The base models of the catalogue, then this project's fine-tuned models, newest first, then
    those shared with it. Checkpoint models are not listed (as at OpenAI) but resolve in retrieve and
    chat; shared checkpoints are listed."""
    cat = resolver.catalogue
    base = [
        Model(id=e.id, created=e.created, owned_by=BASE_OWNER, served_by=served_by(registry, cat, e.id, e.id))
        for e in cat.all()
    ]
    jobs = await session.scalars(
        select(FineTuningJobRow)
        .where(
            FineTuningJobRow.project_id == principal.project_id,
            FineTuningJobRow.status == "succeeded",
            FineTuningJobRow.model_deleted_at.is_(None),
            FineTuningJobRow.fine_tuned_model.is_not(None),
        )
        .order_by(FineTuningJobRow.finished_at.desc(), FineTuningJobRow.id.desc())
    )
    tuned = [
        Model(
            id=j.fine_tuned_model or "",
            created=j.finished_at or 0,
            owned_by=settings.organization_id,
            served_by=served_by(registry, cat, j.fine_tuned_model or "", j.model),
        )
        for j in jobs
    ]
    # Then models other projects share with this one (checkpoint permissions), while they exist.
    grants = await session.scalars(
        select(CheckpointPermissionRow)
        .where(CheckpointPermissionRow.project_id == principal.project_id)
        .order_by(CheckpointPermissionRow.created_at_us.desc(), CheckpointPermissionRow.id.desc())
    )
    for grant in grants:
        found = await resolver.find(session, grant.owner_project_id, grant.model, shared=False)
        if found is not None:
            created = grant.created_at_us // 1_000_000
            engine = served_by(registry, cat, grant.model, found[0].model)
            tuned.append(
                Model(id=grant.model, created=created, owned_by=settings.organization_id, served_by=engine)
            )
    return ModelList(data=base + tuned)


@router.get("/{model:path}", response_model=Model)
async def retrieve_model(
    model: ModelName,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    resolver: ResolverDep,
    registry: RegistryDep,
) -> Model:
    """A base model, a fine-tuned model or a checkpoint of this project."""
    cat = resolver.catalogue
    entry = cat.get(model)
    if entry is not None:
        engine = served_by(registry, cat, entry.id, entry.id)
        return Model(id=entry.id, created=entry.created, owned_by=BASE_OWNER, served_by=engine)
    tuned = await resolver.tuned(session, principal.project_id, model)
    if tuned is None:
        raise model_not_found(model)
    created = tuned.checkpoint.created_at_us // 1_000_000 if tuned.checkpoint else tuned.job.finished_at or 0
    engine = served_by(registry, cat, model, tuned.job.model)
    return Model(id=model, created=created, owned_by=settings.organization_id, served_by=engine)


@router.delete("/{model:path}", response_model=ModelDeleted)
async def delete_model(
    model: ModelName,
    session: SessionDep,
    principal: PrincipalDep,
    resolver: ResolverDep,
    registry: RegistryDep,
) -> ModelDeleted:
    """Delete a fine-tuned model (or checkpoint): it leaves the engines and no longer resolves.
    The job keeps its record and `fine_tuned_model`, as at OpenAI."""
    if resolver.catalogue.get(model) is not None:
        raise PermissionDenied(f"The model `{model}` is a base model and cannot be deleted.", param="model")
    tuned = await resolver.tuned(session, principal.project_id, model, shared=False)
    if tuned is None:
        raise model_not_found(model)
    now = int(time.time())
    if tuned.checkpoint is None:
        tuned.job.model_deleted_at = now
    # A job's model is also its final checkpoint's name (which `model` may be an alias of): both go.
    await session.execute(
        update(FineTuningJobCheckpointRow)
        .where(
            FineTuningJobCheckpointRow.job_id == tuned.job.id,
            FineTuningJobCheckpointRow.fine_tuned_model_checkpoint == tuned.served.name,
        )
        .values(model_deleted_at=now)
    )
    await session.commit()
    await registry.unload(tuned.served)
    return ModelDeleted(id=model, deleted=True)
