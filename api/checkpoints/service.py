"""Sharing a tuned model (or one of its checkpoints) with other projects: the owner project grants,
lists and revokes; a granted project may then chat with it, retrieve it and fine-tune from it
(api/models/resolver.py reads the grants). The owner's key is the admin key of its models here:
OpenAI asks for an organization admin key, which this server does not have.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Principal
from api.checkpoints.schemas import (
    FineTuningCheckpointPermission,
    FineTuningCheckpointPermissionList,
    PermissionDeleteResponse,
)
from api.db.tables import CheckpointPermissionRow, ProjectRow
from api.errors import InvalidRequest, NotFound
from api.ids import new_id, now_us
from api.models.resolver import ModelResolver
from api.pagination import after_cursor

PARAM = "fine_tuned_model_checkpoint"


class PermissionService:
    def __init__(self, session: AsyncSession, resolver: ModelResolver, principal: Principal) -> None:
        self.session = session
        self.resolver = resolver
        self.principal = principal

    async def _own(self, model: str) -> None:
        """Only the project that trained a model manages who else may use it; to anyone else the
        model is absent, as in /v1/models."""
        if await self.resolver.find(self.session, self.principal.project_id, model, shared=False) is None:
            raise NotFound(
                f"The model `{model}` does not exist or you do not have access to it.",
                param=PARAM,
                code="model_not_found",
            )

    async def create(self, model: str, project_ids: list[str]) -> FineTuningCheckpointPermissionList:
        await self._own(model)
        wanted = list(dict.fromkeys(project_ids))  # a project named twice is granted once
        known = set(await self.session.scalars(select(ProjectRow.id).where(ProjectRow.id.in_(wanted))))
        for index, project_id in enumerate(wanted):
            if project_id == self.principal.project_id:
                raise InvalidRequest(
                    "A model is always available to the project that trained it.",
                    param=f"project_ids.{index}",
                )
            if project_id not in known:
                raise InvalidRequest(f"No such project: {project_id}", param=f"project_ids.{index}")
        rows = await self._rows(model, wanted)
        missing = [p for p in wanted if p not in rows]
        for project_id in missing:
            self.session.add(
                CheckpointPermissionRow(
                    id=new_id("cp_"),
                    model=model,
                    owner_project_id=self.principal.project_id,
                    project_id=project_id,
                    created_at_us=now_us(),
                )
            )
        try:
            await self.session.commit()
        except IntegrityError:  # granted concurrently: the other request's grant is the grant
            await self.session.rollback()
        rows = await self._rows(model, wanted)
        data = [FineTuningCheckpointPermission.from_row(rows[p]) for p in wanted if p in rows]
        return FineTuningCheckpointPermissionList.of(data, has_more=False)

    async def _rows(self, model: str, project_ids: list[str]) -> dict[str, CheckpointPermissionRow]:
        found = await self.session.scalars(
            select(CheckpointPermissionRow).where(
                CheckpointPermissionRow.model == model,
                CheckpointPermissionRow.project_id.in_(project_ids),
            )
        )
        return {r.project_id: r for r in found}

    async def list(
        self,
        model: str,
        *,
        after: str | None,
        limit: int,
        order: Literal["ascending", "descending"],
        project_id: str | None,
    ) -> FineTuningCheckpointPermissionList:
        await self._own(model)
        stmt = select(CheckpointPermissionRow).where(
            CheckpointPermissionRow.model == model,
            CheckpointPermissionRow.owner_project_id == self.principal.project_id,
        )
        if project_id is not None:
            stmt = stmt.where(CheckpointPermissionRow.project_id == project_id)
        cursor = None
        if after is not None:
            row = await self.session.get(CheckpointPermissionRow, after)
            if row is None or row.model != model or row.owner_project_id != self.principal.project_id:
                raise InvalidRequest(f"No such permission: {after}", param="after")
            cursor = (row.created_at_us, row.id)
        direction: Literal["asc", "desc"] = "asc" if order == "ascending" else "desc"
        stmt = after_cursor(
            stmt, CheckpointPermissionRow.created_at_us, CheckpointPermissionRow.id, cursor, direction
        )
        rows = list(await self.session.scalars(stmt.limit(limit + 1)))
        data = [FineTuningCheckpointPermission.from_row(r) for r in rows[:limit]]
        return FineTuningCheckpointPermissionList.of(data, has_more=len(rows) > limit)

    async def delete(self, model: str, permission_id: str) -> PermissionDeleteResponse:
        await self._own(model)
        result = await self.session.execute(
            delete(CheckpointPermissionRow).where(
                CheckpointPermissionRow.id == permission_id,
                CheckpointPermissionRow.model == model,
                CheckpointPermissionRow.owner_project_id == self.principal.project_id,
            )
        )
        await self.session.commit()
        if not getattr(result, "rowcount", 0):
            raise NotFound(f"No such permission: {permission_id}", param="permission_id")
        return PermissionDeleteResponse(id=permission_id, deleted=True)
