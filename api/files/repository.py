"""SQL for files. Every query is scoped to one project: isolation has this one choke point."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.db.tables import FileRow
from api.pagination import Order, after_cursor


class FileRepository:
    def __init__(self, session: AsyncSession, project_id: str) -> None:
        self.session = session
        self.project_id = project_id

    def _scoped(self, now: int) -> Select[FileRow]:
        return select(FileRow).where(
            FileRow.project_id == self.project_id,
            or_(FileRow.expires_at.is_(None), FileRow.expires_at > now),
        )

    async def get(self, file_id: str, now: int) -> FileRow | None:
        return await self.session.scalar(self._scoped(now).where(FileRow.id == file_id))

    async def by_idempotency_key(self, key: str) -> FileRow | None:
        return await self.session.scalar(
            select(FileRow).where(FileRow.project_id == self.project_id, FileRow.idempotency_key == key)
        )

    async def page(
        self, *, now: int, purpose: str | None, order: Order, limit: int, after: FileRow | None
    ) -> Sequence[FileRow]:
        stmt = self._scoped(now)
        if purpose is not None:
            stmt = stmt.where(FileRow.purpose == purpose)
        cursor = (after.created_at_us, after.id) if after is not None else None
        stmt = after_cursor(stmt, FileRow.created_at_us, FileRow.id, cursor, order).limit(limit + 1)
        return (await self.session.scalars(stmt)).all()

    def add(self, row: FileRow) -> None:
        self.session.add(row)

    async def delete(self, file_id: str) -> None:
        await self.session.execute(
            delete(FileRow).where(FileRow.project_id == self.project_id, FileRow.id == file_id)
        )


async def expired_files(session: AsyncSession, now: int, limit: int = 500) -> Sequence[FileRow]:
    """Not tenant-scoped on purpose: only the sweeper calls it."""
    stmt = select(FileRow).where(FileRow.expires_at.is_not(None), FileRow.expires_at <= now).limit(limit)
    return (await session.scalars(stmt)).all()
