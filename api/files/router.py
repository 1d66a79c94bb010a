"""HTTP for /v1/files: parse, call the service once, return a wire object."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import CatalogueDep, IdempotencyKey, PrincipalDep, SessionDep, SettingsDep, StoreDep
from api.errors import InvalidRequest
from api.files.names import content_disposition
from api.files.report import FileValidationReport, Method
from api.files.schemas import UPLOAD_PURPOSES, FileDeleted, FileList, FileObject
from api.files.service import FileService
from api.multipart import iter_multipart, multipart_openapi
from api.pagination import Order

router = APIRouter(prefix="/v1/files", tags=["files"])

# Room for the form fields and boundaries around a maximum-size file.
_MULTIPART_OVERHEAD = 1024 * 1024


def file_service(
    session: SessionDep, store: StoreDep, settings: SettingsDep, principal: PrincipalDep
) -> FileService:
    return FileService(session, store, settings, principal)


Files = Annotated[FileService, Depends(file_service)]

_UPLOAD_BODY = multipart_openapi(
    {
        "file": {"type": "string", "format": "binary"},
        "purpose": {"type": "string", "enum": list(UPLOAD_PURPOSES)},
        "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
        "expires_after[seconds]": {"type": "integer", "minimum": 3600, "maximum": 2592000},
    },
    ["file", "purpose"],
)


@router.post("", response_model=FileObject, openapi_extra=_UPLOAD_BODY)
async def create_file(
    request: Request, files: Files, settings: SettingsDep, idempotency_key: IdempotencyKey = None
) -> FileObject:
    """Upload a file (streamed to storage; fine-tune files are validated line by line)."""
    events = iter_multipart(request, max_body_bytes=settings.max_file_bytes + _MULTIPART_OVERHEAD)
    return await files.create(events, idempotency_key)


_VALIDATE_BODY = multipart_openapi({"file": {"type": "string", "format": "binary"}}, ["file"])


def report_limit(catalogue: CatalogueDep, model: str | None = None) -> int | None:
    """`model`: flag examples longer than that base model's context (`max_tokens_limit`)."""
    if model is None:
        return None
    entry = catalogue.get(model)
    if entry is None:
        raise InvalidRequest(f"The model `{model}` is not in this deployment's catalogue.", param="model")
    return entry.max_length


ReportLimit = Annotated[int | None, Depends(report_limit)]


@router.post("/validation", response_model=FileValidationReport, openapi_extra=_VALIDATE_BODY)
async def validate_file_bytes(
    request: Request, files: Files, settings: SettingsDep, limit: ReportLimit, method: Method | None = None
) -> FileValidationReport:
    """ftapi extension: the validator's full report on an uploaded fine-tune file, storing nothing."""
    events = iter_multipart(request, max_body_bytes=settings.max_file_bytes + _MULTIPART_OVERHEAD)
    return await files.validate_upload(events, method=method, max_tokens=limit)


@router.get("", response_model=FileList)
async def list_files(
    files: Files,
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Order = "desc",
    after: str | None = None,
) -> FileList:
    """List this project's files, newest first by default."""
    return await files.list(purpose=purpose, order=order, limit=limit, after=after)


@router.get("/{file_id}", response_model=FileObject)
async def retrieve_file(file_id: str, files: Files) -> FileObject:
    """Retrieve a file object."""
    return await files.retrieve(file_id)


@router.get("/{file_id}/validation", response_model=FileValidationReport)
async def file_validation(
    file_id: str, files: Files, limit: ReportLimit, method: Method | None = None
) -> FileValidationReport:
    """ftapi extension: the validator's full report on a stored fine-tune file."""
    return await files.validation_report(file_id, method=method, max_tokens=limit)


@router.delete("/{file_id}", response_model=FileDeleted)
async def delete_file(file_id: str, files: Files) -> FileDeleted:
    """Delete a file and its stored bytes."""
    return await files.delete(file_id)


@router.get(
    "/{file_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def file_content(file_id: str, files: Files) -> StreamingResponse:
    """Download the file's bytes (streamed)."""
    row, body = await files.content(file_id)
    return StreamingResponse(
        body,
        media_type="application/octet-stream",
        headers={
            "content-length": str(row.bytes),
            "content-disposition": content_disposition(row.filename),
        },
    )
