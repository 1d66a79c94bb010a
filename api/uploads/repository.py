"""SQL for uploads and their parts, scoped to one project."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.db.tables import UploadPartRow, UploadRow


class UploadRepository:
    def __init__(self, session: AsyncSession, project_id: str) -> None:
        self.session = session
        self.project_id = project_id

    async def get(self, upload_id: str) -> UploadRow | None:
        return await self.session.scalar(
            select(UploadRow).where(UploadRow.project_id == self.project_id, UploadRow.id == upload_id)
        )

    async def by_idempotency_key(self, key: str) -> UploadRow | None:
        return await self.session.scalar(
            select(UploadRow).where(UploadRow.project_id == self.project_id, UploadRow.idempotency_key == key)
        )

    def add(self, row: UploadRow | UploadPartRow) -> None:
        self.session.add(row)

    async def transition(self, upload_id: str, from_status: str, to_status: str) -> bool:
        """Compare-and-set on status: exactly one concurrent caller wins."""
        result = await self.session.execute(
            update(UploadRow)
            .where(
                UploadRow.project_id == self.project_id,
                UploadRow.id == upload_id,
                UploadRow.status == from_status,
            )
            .values(status=to_status)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def parts(self, upload_id: str) -> Sequence[UploadPartRow]:
        return (
            await self.session.scalars(select(UploadPartRow).where(UploadPartRow.upload_id == upload_id))
        ).all()

    async def received_bytes(self, upload_id: str) -> int:
        total = await self.session.scalar(
            select(func.coalesce(func.sum(UploadPartRow.bytes), 0)).where(
                UploadPartRow.upload_id == upload_id
            )
        )
        return int(total or 0)


async def stale_uploads(session: AsyncSession, now: int, limit: int = 200) -> Sequence[UploadRow]:
    """Pending uploads past their expiry (all projects: only the sweeper calls it)."""
    stmt = (
        select(UploadRow)
        .where(UploadRow.status.in_(("pending", "completing")), UploadRow.expires_at <= now)
        .limit(limit)
    )
    return (await session.scalars(stmt)).all()
