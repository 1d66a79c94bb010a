"""Background clean-up: expired uploads lose their staged parts, expired files their row and blob.

Safe to run in every replica: each step is a compare-and-set or an idempotent delete.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.db.tables import FileRow, UploadRow
from api.files.repository import expired_files
from api.uploads.repository import stale_uploads
from api.uploads.service import staging_prefix
from storage import BlobStore

log = structlog.get_logger()

# A completion still running at expiry gets this long before its upload is declared expired.
COMPLETING_GRACE_SECONDS = 3600


async def sweep_once(sessions: async_sessionmaker[AsyncSession], store: BlobStore) -> int:
    now = int(time.time())
    removed = 0
    async with sessions() as session:
        for upload in await stale_uploads(session, now):
            if upload.status == "completing" and now < upload.expires_at + COMPLETING_GRACE_SECONDS:
                continue
            result = await session.execute(
                update(UploadRow)
                .where(UploadRow.id == upload.id, UploadRow.status == upload.status)
                .values(status="expired")
            )
            await session.commit()
            if result.rowcount:  # type: ignore[attr-defined]
                await store.delete_prefix(staging_prefix(upload.project_id, upload.id))
                removed += 1
        for file in await expired_files(session, now):
            await session.execute(delete(FileRow).where(FileRow.id == file.id))
            await session.commit()
            await store.delete(file.storage_key)
            removed += 1
    if removed:
        log.info("sweeper.removed", count=removed)
    return removed


async def run_sweeper(sessions: async_sessionmaker[AsyncSession], store: BlobStore, interval: float) -> None:
    while True:
        try:
            await sweep_once(sessions, store)
        except Exception:
            log.exception("sweeper.failed")
        await asyncio.sleep(interval)
