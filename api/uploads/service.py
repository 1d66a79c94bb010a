"""Uploads: a large file sent in parts (each staged as its own blob), assembled in `part_ids` order.

Assembly is `BlobStore.compose`: on S3 a multipart upload that copies large parts server-side.
The bytes are read once more only when they must be checked (fine-tune/batch content, or an md5).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Principal
from api.db.tables import FileRow, UploadPartRow, UploadRow
from api.errors import InvalidRequest, NotFound
from api.files.content_check import JSONL_PURPOSES, ContentCheck, check_extension
from api.files.names import clean_filename
from api.files.schemas import FileObject
from api.files.service import check_purpose, file_key
from api.idempotency import write_once
from api.ids import new_id, now_us
from api.multipart import Event, FilePart, drain, file_bytes, skip_file
from api.settings import Settings
from api.uploads.repository import UploadRepository
from api.uploads.schemas import Upload, UploadCompleteParams, UploadCreateParams, UploadPart
from storage import BlobStore

log = structlog.get_logger()


def staging_prefix(project_id: str, upload_id: str) -> str:
    return f"uploads/{project_id}/{upload_id}/"


class UploadService:
    def __init__(self, session: AsyncSession, store: BlobStore, settings: Settings, principal: Principal):
        self.session = session
        self.store = store
        self.settings = settings
        self.principal = principal
        self.repo = UploadRepository(session, principal.project_id)

    async def create(self, params: UploadCreateParams, idempotency_key: str | None) -> Upload:
        if idempotency_key and (existing := await self.repo.by_idempotency_key(idempotency_key)):
            return Upload.from_row(existing)
        purpose = check_purpose(params.purpose)
        filename = clean_filename(params.filename, param="filename")
        check_extension(purpose, filename)
        if params.bytes > self.settings.max_upload_bytes:
            raise InvalidRequest(
                f"Upload is too large: {params.bytes} bytes requested, the maximum is "
                f"{self.settings.max_upload_bytes}.",
                param="bytes",
            )
        created = now_us()
        row = UploadRow(
            id=new_id("upload_"),
            project_id=self.principal.project_id,
            filename=filename,
            purpose=purpose,
            mime_type=params.mime_type,
            bytes=params.bytes,
            status="pending",
            created_at_us=created,
            expires_at=created // 1_000_000 + self.settings.upload_ttl_seconds,
            file_expires_after=params.expires_after.seconds if params.expires_after else None,
            idempotency_key=idempotency_key or None,
        )
        self.repo.add(row)
        winner = await write_once(
            self.session, idempotency_key, self.session.commit, self.repo.by_idempotency_key
        )
        if winner is not None:
            return Upload.from_row(winner)
        log.info("upload.created", upload_id=row.id, bytes=row.bytes)
        return Upload.from_row(row)

    async def _pending(self, upload_id: str) -> UploadRow:
        row = await self._get(upload_id)
        if row.status == "pending" and time.time() >= row.expires_at:
            await self._expire(row)
        if row.status != "pending":
            raise InvalidRequest(
                f"Upload {upload_id} is {Upload.from_row(row).status}, so it cannot be changed.",
                param="upload_id",
            )
        return row

    async def _get(self, upload_id: str) -> UploadRow:
        row = await self.repo.get(upload_id)
        if row is None:
            raise NotFound(f"No such Upload object: {upload_id}", param="upload_id")
        return row

    async def _expire(self, row: UploadRow) -> None:
        if await self.repo.transition(row.id, "pending", "expired"):
            await self.session.commit()
            await self.store.delete_prefix(staging_prefix(row.project_id, row.id))
        await self.session.refresh(row)

    async def add_part(self, upload_id: str, events: AsyncIterator[Event]) -> UploadPart:
        try:
            row = await self._pending(upload_id)
        except Exception:
            await drain(events)
            raise
        part_id = new_id("part_")
        key = staging_prefix(row.project_id, row.id) + part_id
        room = row.bytes - await self.repo.received_bytes(row.id)
        size: int | None = None
        try:
            async for event in events:
                if isinstance(event, FilePart) and event.name == "data" and size is None:
                    size = await self.store.put_stream(key, self._part_chunks(events, room))
                elif isinstance(event, FilePart):
                    await skip_file(events)
            if size is None:
                raise InvalidRequest("Missing required parameter: 'data'.", param="data")
            part = UploadPartRow(
                id=part_id, upload_id=row.id, bytes=size, storage_key=key, created_at_us=now_us()
            )
            self.repo.add(part)
            await self.session.commit()
        except BaseException:
            # Also when the body breaks off after the part was stored (no closing boundary).
            if size is not None:
                await self.store.delete(key)
            raise
        return UploadPart.from_row(part)

    async def _part_chunks(self, events: AsyncIterator[Event], room: int) -> AsyncIterator[bytes]:
        total = 0
        cap = self.settings.max_upload_part_bytes
        async for data in file_bytes(events, limit=cap, param="data", what="Upload part"):
            total += len(data)
            if total > room:
                raise InvalidRequest(
                    "This part would take the upload past the number of bytes declared when it was created.",
                    param="data",
                )
            yield data

    async def complete(self, upload_id: str, params: UploadCompleteParams) -> Upload:
        row = await self._pending(upload_id)
        project_id = row.project_id
        if not await self.repo.transition(upload_id, "pending", "completing"):
            raise InvalidRequest(f"Upload {upload_id} is already being completed.", param="upload_id")
        await self.session.commit()
        final_key: str | None = None
        try:
            sources = await self._ordered_part_keys(row, params.part_ids)
            await self._check_content(row, sources, params.md5)
            file_id = new_id("file-", 22)
            final_key = file_key(row.project_id, file_id)
            size = await self.store.compose(final_key, sources)
            created = now_us()
            file_row = FileRow(
                id=file_id,
                project_id=row.project_id,
                filename=row.filename,
                purpose=row.purpose,
                bytes=size,
                status="processed",
                status_details=None,
                storage_key=final_key,
                created_at_us=created,
                expires_at=created // 1_000_000 + row.file_expires_after if row.file_expires_after else None,
                idempotency_key=None,
            )
            self.session.add(file_row)
            await self.session.flush()
            row.status = "completed"
            row.file_id = file_id
            await self.session.commit()
        except BaseException:
            await self.session.rollback()  # expires `row`: use the ids captured above
            # Let the client fix its part list and complete again.
            await self.repo.transition(upload_id, "completing", "pending")
            await self.session.commit()
            if final_key is not None:
                await self.store.delete(final_key)
            raise
        await self.store.delete_prefix(staging_prefix(project_id, upload_id))
        log.info("upload.completed", upload_id=upload_id, file_id=file_id, bytes=size)
        return Upload.from_row(row, FileObject.from_row(file_row))

    async def _ordered_part_keys(self, row: UploadRow, part_ids: list[str]) -> list[str]:
        parts = {p.id: p for p in await self.repo.parts(row.id)}
        if len(set(part_ids)) != len(part_ids):
            raise InvalidRequest("part_ids contains duplicates.", param="part_ids")
        unknown = [p for p in part_ids if p not in parts]
        if unknown:
            raise InvalidRequest(f"Part {unknown[0]} does not belong to upload {row.id}.", param="part_ids")
        total = sum(parts[p].bytes for p in part_ids)
        if total != row.bytes:
            raise InvalidRequest(
                f"The parts add up to {total} bytes, but the upload was created with bytes={row.bytes}.",
                param="part_ids",
            )
        return [parts[p].storage_key for p in part_ids]

    async def _check_content(self, row: UploadRow, sources: list[str], md5: str | None) -> None:
        needs_content = row.purpose in JSONL_PURPOSES
        if not needs_content and not md5:
            return
        digest = hashlib.md5(usedforsecurity=False) if md5 else None
        check = (
            ContentCheck(row.purpose, row.filename, self.settings.max_jsonl_line_bytes)
            if needs_content
            else None
        )
        for key in sources:
            async for chunk in self.store.open_stream(key):
                if digest is not None:
                    digest.update(chunk)
                if check is not None:
                    check.feed(chunk)
        if digest is not None and digest.hexdigest() != md5.lower():  # type: ignore[union-attr]
            raise InvalidRequest("The md5 checksum does not match the uploaded bytes.", param="md5")
        if check is not None:
            check.verdict(row.purpose)

    async def cancel(self, upload_id: str) -> Upload:
        row = await self._pending(upload_id)
        if not await self.repo.transition(row.id, "pending", "cancelled"):
            raise InvalidRequest(f"Upload {upload_id} can no longer be cancelled.", param="upload_id")
        await self.session.commit()
        await self.session.refresh(row)
        await self.store.delete_prefix(staging_prefix(row.project_id, row.id))
        return Upload.from_row(row)
