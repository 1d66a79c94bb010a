"""Files: streamed uploads with content checks, listing, retrieval, content and deletion.

A file exists once its blob is stored and its row committed; any failure before that leaves neither.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Principal
from api.db.tables import FileRow
from api.errors import InvalidRequest, NotFound
from api.files.content_check import ContentCheck, check_extension
from api.files.names import clean_filename
from api.files.report import FileValidationReport, Method, validate_stream
from api.files.repository import FileRepository
from api.files.schemas import UPLOAD_PURPOSES, FileDeleted, FileList, FileObject
from api.idempotency import write_once
from api.ids import new_id, now_us
from api.multipart import Event, FieldPart, FilePart, drain, file_bytes, skip_file
from api.pagination import Order
from api.settings import Settings
from storage import BlobNotFound, BlobStore

log = structlog.get_logger()

MIN_EXPIRY, MAX_EXPIRY = 3600, 2_592_000


def file_key(project_id: str, file_id: str) -> str:
    return f"files/{project_id}/{file_id}"


def check_purpose(purpose: str | None) -> str:
    if purpose is None:
        raise InvalidRequest("Missing required parameter: 'purpose'.", param="purpose")
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidRequest(
            f"'{purpose}' is not one of {list(UPLOAD_PURPOSES)} - 'purpose'", param="purpose"
        )
    return purpose


def expires_at_from(anchor: str | None, seconds: str | int | None, created_s: int) -> int | None:
    """`expires_after` as OpenAI defines it: anchor `created_at`, 1 hour to 30 days."""
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequest("expires_after.anchor must be 'created_at'.", param="expires_after.anchor")
    try:
        secs = int(seconds) if seconds is not None else None
    except ValueError:
        secs = None
    if secs is None or not MIN_EXPIRY <= secs <= MAX_EXPIRY:
        raise InvalidRequest(
            f"expires_after.seconds must be an integer between {MIN_EXPIRY} and {MAX_EXPIRY}.",
            param="expires_after.seconds",
        )
    return created_s + secs


class FileService:
    def __init__(self, session: AsyncSession, store: BlobStore, settings: Settings, principal: Principal):
        self.session = session
        self.store = store
        self.settings = settings
        self.principal = principal
        self.repo = FileRepository(session, principal.project_id)

    async def create(self, events: AsyncIterator[Event], idempotency_key: str | None) -> FileObject:
        if idempotency_key:
            existing = await self.repo.by_idempotency_key(idempotency_key)
            if existing is not None:
                await drain(events)
                return FileObject.from_row(existing)

        fields: dict[str, str] = {}
        stored: tuple[str, str, str, int, ContentCheck] | None = None  # id, key, filename, size, check
        try:
            async for event in events:
                if isinstance(event, FieldPart):
                    fields[event.name] = event.value
                elif isinstance(event, FilePart) and event.name == "file" and stored is None:
                    stored = await self._store_file_part(event, fields.get("purpose"), events)
                elif isinstance(event, FilePart):
                    await skip_file(events)
            if stored is None:
                raise InvalidRequest("Missing required parameter: 'file'.", param="file")
            file_id, key, filename, size, check = stored
            purpose = check_purpose(fields.get("purpose"))
            check_extension(purpose, filename)
            check.verdict(purpose)
            created_us = now_us()
            row = FileRow(
                id=file_id,
                project_id=self.principal.project_id,
                filename=filename,
                purpose=purpose,
                bytes=size,
                status="processed",
                status_details=None,
                storage_key=key,
                created_at_us=created_us,
                expires_at=expires_at_from(
                    fields.get("expires_after[anchor]"),
                    fields.get("expires_after[seconds]"),
                    created_us // 1_000_000,
                ),
                idempotency_key=idempotency_key or None,
            )
            self.repo.add(row)
            winner = await write_once(
                self.session, idempotency_key, self.session.commit, self.repo.by_idempotency_key
            )
            if winner is not None:  # a concurrent request with the same key won: answer with its file
                await self._discard(stored)
                return FileObject.from_row(winner)
        except BaseException:
            await self._discard(stored)
            raise
        log.info("file.created", file_id=file_id, bytes=size, purpose=purpose)
        return FileObject.from_row(row)

    async def _store_file_part(
        self, part: FilePart, purpose: str | None, events: AsyncIterator[Event]
    ) -> tuple[str, str, str, int, ContentCheck]:
        try:
            filename = clean_filename(part.filename, param="file") if part.filename else "upload"
            if purpose is not None:
                check_extension(check_purpose(purpose), filename)
        except InvalidRequest:
            await drain(events)
            raise
        file_id = new_id("file-", 22)
        key = file_key(self.principal.project_id, file_id)
        check = ContentCheck(purpose, filename, self.settings.max_jsonl_line_bytes)
        limit = self.settings.max_file_bytes

        async def chunks() -> AsyncIterator[bytes]:
            async for data in file_bytes(events, limit=limit, param="file", what="File"):
                check.feed(data)
                yield data
            if purpose is not None:
                # Known purpose: refuse before the blob is committed, so nothing is ever stored.
                check.verdict(purpose)

        size = await self.store.put_stream(key, chunks())
        return file_id, key, filename, size, check

    async def _discard(self, stored: tuple[str, str, str, int, ContentCheck] | None) -> None:
        if stored is not None:
            try:
                await self.store.delete(stored[1])
            except Exception:
                log.exception("file.discard_failed", key=stored[1])

    async def list(self, *, purpose: str | None, order: Order, limit: int, after: str | None) -> FileList:
        now = int(time.time())
        cursor = None
        if after is not None:
            cursor = await self.repo.get(after, now)
            if cursor is None:
                raise InvalidRequest(f"No such File object: {after}", param="after")
        rows = await self.repo.page(now=now, purpose=purpose, order=order, limit=limit, after=cursor)
        data = [FileObject.from_row(r) for r in rows[:limit]]
        return FileList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=len(rows) > limit,
        )

    async def get_row(self, file_id: str) -> FileRow:
        row = await self.repo.get(file_id, int(time.time()))
        if row is None:
            raise NotFound(f"No such File object: {file_id}", param="id")
        return row

    async def retrieve(self, file_id: str) -> FileObject:
        return FileObject.from_row(await self.get_row(file_id))

    async def delete(self, file_id: str) -> FileDeleted:
        row = await self.get_row(file_id)
        await self.repo.delete(file_id)
        await self.session.commit()
        # The row is gone first: a blob without a row is invisible garbage, never a broken file.
        try:
            await self.store.delete(row.storage_key)
        except Exception:
            log.exception("file.blob_delete_failed", file_id=file_id)
        return FileDeleted(id=file_id, deleted=True)

    async def validation_report(
        self, file_id: str, *, method: Method | None, max_tokens: int | None
    ) -> FileValidationReport:
        row = await self.get_row(file_id)
        if row.purpose != "fine-tune":
            raise InvalidRequest(
                f"File {file_id} has purpose '{row.purpose}': only fine-tune files have a validation report.",
                param="file_id",
            )
        _, body = await self.content(file_id)
        report = await validate_stream(
            body, method=method, max_tokens=max_tokens, max_line_bytes=self.settings.max_jsonl_line_bytes
        )
        return FileValidationReport.from_report(report, file_id=file_id, filename=row.filename)

    async def validate_upload(
        self, events: AsyncIterator[Event], *, method: Method | None, max_tokens: int | None
    ) -> FileValidationReport:
        """The report on the body's `file` part; nothing is stored."""
        report: FileValidationReport | None = None
        async for event in events:
            if isinstance(event, FilePart) and event.name == "file" and report is None:
                filename = event.filename or "upload"
                chunks = file_bytes(events, limit=self.settings.max_file_bytes, param="file", what="File")
                found = await validate_stream(
                    chunks,
                    method=method,
                    max_tokens=max_tokens,
                    max_line_bytes=self.settings.max_jsonl_line_bytes,
                )
                report = FileValidationReport.from_report(found, file_id=None, filename=filename)
            elif isinstance(event, FilePart):
                await skip_file(events)
        if report is None:
            raise InvalidRequest("Missing required parameter: 'file'.", param="file")
        return report

    async def content(self, file_id: str) -> tuple[FileRow, AsyncIterator[bytes]]:
        row = await self.get_row(file_id)
        stream = self.store.open_stream(row.storage_key)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            first = b""
        except BlobNotFound as exc:
            raise NotFound(f"No such File object: {file_id}", param="id") from exc

        async def body() -> AsyncIterator[bytes]:
            if first:
                yield first
            async for chunk in stream:
                yield chunk

        return row, body()
