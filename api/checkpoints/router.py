"""HTTP for /v1/fine_tuning/checkpoints/{fine_tuned_model_checkpoint}/permissions."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from api.checkpoints.schemas import (
    FineTuningCheckpointPermissionList,
    PermissionCreateParams,
    PermissionDeleteResponse,
)
from api.checkpoints.service import PermissionService
from api.deps import PrincipalDep, SessionDep
from api.models.router import ResolverDep

router = APIRouter(prefix="/v1/fine_tuning/checkpoints", tags=["fine-tuning"])
Checkpoint = Annotated[
    str, Path(description="A fine-tuned model (ft:...) or one of its checkpoints (...:ckpt-step-N).")
]


def permission_service(
    session: SessionDep, resolver: ResolverDep, principal: PrincipalDep
) -> PermissionService:
    return PermissionService(session, resolver, principal)


Permissions = Annotated[PermissionService, Depends(permission_service)]


@router.post(
    "/{fine_tuned_model_checkpoint:path}/permissions", response_model=FineTuningCheckpointPermissionList
)
async def create_permission(
    fine_tuned_model_checkpoint: Checkpoint, params: PermissionCreateParams, permissions: Permissions
) -> FineTuningCheckpointPermissionList:
    """Share a fine-tuned model of this project with other projects (by project id)."""
    return await permissions.create(fine_tuned_model_checkpoint, params.project_ids)


@router.get(
    "/{fine_tuned_model_checkpoint:path}/permissions", response_model=FineTuningCheckpointPermissionList
)
async def list_permissions(
    fine_tuned_model_checkpoint: Checkpoint,
    permissions: Permissions,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    order: Literal["ascending", "descending"] = "descending",
    project_id: str | None = None,
) -> FineTuningCheckpointPermissionList:
    """The projects a fine-tuned model of this project is shared with."""
    return await permissions.list(
        fine_tuned_model_checkpoint, after=after, limit=limit, order=order, project_id=project_id
    )


@router.delete(
    "/{fine_tuned_model_checkpoint:path}/permissions/{permission_id}", response_model=PermissionDeleteResponse
)
async def delete_permission(
    fine_tuned_model_checkpoint: Checkpoint, permission_id: str, permissions: Permissions
) -> PermissionDeleteResponse:
    """Stop sharing a fine-tuned model with a project: its requests fail from now on."""
    return await permissions.delete(fine_tuned_model_checkpoint, permission_id)
