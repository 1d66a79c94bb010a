"""HTTP for /v1/uploads: create, add a part, complete, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from api.deps import IdempotencyKey, PrincipalDep, SessionDep, SettingsDep, StoreDep
from api.multipart import iter_multipart, multipart_openapi
from api.uploads.schemas import Upload, UploadCompleteParams, UploadCreateParams, UploadPart
from api.uploads.service import UploadService

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


def upload_service(
    session: SessionDep, store: StoreDep, settings: SettingsDep, principal: PrincipalDep
) -> UploadService:
    return UploadService(session, store, settings, principal)


Uploads = Annotated[UploadService, Depends(upload_service)]

_PART_BODY = multipart_openapi({"data": {"type": "string", "format": "binary"}}, ["data"])


@router.post("", response_model=Upload)
async def create_upload(
    params: UploadCreateParams, uploads: Uploads, idempotency_key: IdempotencyKey = None
) -> Upload:
    """Create an upload that accepts parts for one file of up to 8 GB."""
    return await uploads.create(params, idempotency_key)


@router.post("/{upload_id}/parts", response_model=UploadPart, openapi_extra=_PART_BODY)
async def add_upload_part(
    upload_id: str, request: Request, uploads: Uploads, settings: SettingsDep
) -> UploadPart:
    """Add a part (at most 64 MB) to a pending upload."""
    events = iter_multipart(request, max_body_bytes=settings.max_upload_part_bytes + 1024 * 1024)
    return await uploads.add_part(upload_id, events)


@router.post("/{upload_id}/complete", response_model=Upload)
async def complete_upload(upload_id: str, params: UploadCompleteParams, uploads: Uploads) -> Upload:
    """Assemble the parts in `part_ids` order into a File."""
    return await uploads.complete(upload_id, params)


@router.post("/{upload_id}/cancel", response_model=Upload)
async def cancel_upload(upload_id: str, uploads: Uploads) -> Upload:
    """Cancel a pending upload; its parts are discarded."""
    return await uploads.cancel(upload_id)
