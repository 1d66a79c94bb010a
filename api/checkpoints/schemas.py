"""Wire types of /v1/fine_tuning/checkpoints/{model}/permissions, shaped as in openai-python
(`PermissionCreateResponse`, `PermissionRetrieveResponse`, `PermissionDeleteResponse`) and OpenAI's
spec (`FineTuningCheckpointPermission`, `ListFineTuningCheckpointPermissionResponse`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.db.tables import CheckpointPermissionRow


class PermissionCreateParams(BaseModel):
    project_ids: list[str] = Field(min_length=1, max_length=100)


class FineTuningCheckpointPermission(BaseModel):
    id: str
    created_at: int
    object: Literal["checkpoint.permission"] = "checkpoint.permission"
    project_id: str

    @classmethod
    def from_row(cls, row: CheckpointPermissionRow) -> FineTuningCheckpointPermission:
        return cls(id=row.id, created_at=row.created_at_us // 1_000_000, project_id=row.project_id)


class FineTuningCheckpointPermissionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningCheckpointPermission]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool

    @classmethod
    def of(
        cls, data: list[FineTuningCheckpointPermission], has_more: bool
    ) -> FineTuningCheckpointPermissionList:
        return cls(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=has_more,
        )


class PermissionDeleteResponse(BaseModel):
    id: str
    deleted: bool
    object: Literal["checkpoint.permission"] = "checkpoint.permission"
