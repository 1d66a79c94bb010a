"""Wire types of the Uploads API (openai-python: `Upload`, `UploadPart`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.db.tables import UploadPartRow, UploadRow
from api.files.schemas import FileObject


class ExpiresAfter(BaseModel):
    anchor: Literal["created_at"]
    seconds: int = Field(ge=3600, le=2_592_000)


class UploadCreateParams(BaseModel):
    bytes: int = Field(gt=0)
    filename: str = Field(min_length=1, max_length=512)
    mime_type: str = Field(min_length=1, max_length=128)
    purpose: str
    expires_after: ExpiresAfter | None = None


class UploadCompleteParams(BaseModel):
    part_ids: list[str] = Field(min_length=1)
    md5: str | None = None


class Upload(BaseModel):
    id: str
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    object: Literal["upload"] = "upload"
    purpose: str
    status: Literal["pending", "completed", "cancelled", "expired"]
    file: FileObject | None = None

    @classmethod
    def from_row(cls, row: UploadRow, file: FileObject | None = None) -> Upload:
        # "completing" is internal: to the client the upload is still pending until it completes.
        status = "pending" if row.status == "completing" else row.status
        return cls(
            id=row.id,
            bytes=row.bytes,
            created_at=row.created_at_us // 1_000_000,
            expires_at=row.expires_at,
            filename=row.filename,
            purpose=row.purpose,
            status=status,  # type: ignore[arg-type]
            file=file,
        )


class UploadPart(BaseModel):
    id: str
    created_at: int
    object: Literal["upload.part"] = "upload.part"
    upload_id: str

    @classmethod
    def from_row(cls, row: UploadPartRow) -> UploadPart:
        return cls(
            id=row.id,
            created_at=row.created_at_us // 1_000_000,
            object="upload.part",
            upload_id=row.upload_id,
        )
