"""Wire types of the Files API, named and ordered as in openai-python."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, SerializerFunctionWrapHandler, model_serializer

from api.db.tables import FileRow

FilePurpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]
UPLOAD_PURPOSES: tuple[str, ...] = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


class FileObject(BaseModel):
    id: str
    bytes: int
    created_at: int
    filename: str
    object: Literal["file"] = "file"
    purpose: str
    status: Literal["uploaded", "processed", "error"]
    expires_at: int | None = None
    status_details: str | None = None

    @model_serializer(mode="wrap")
    def _omit_unset_optionals(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # OpenAI's schema types these as non-nullable optionals: absent, never null.
        data: dict[str, Any] = handler(self)
        for key in ("expires_at", "status_details"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @classmethod
    def from_row(cls, row: FileRow) -> FileObject:
        return cls(
            id=row.id,
            bytes=row.bytes,
            created_at=row.created_at_us // 1_000_000,
            filename=row.filename,
            purpose=row.purpose,
            status=row.status,  # type: ignore[arg-type]
            expires_at=row.expires_at,
            status_details=row.status_details,
        )


class FileDeleted(BaseModel):
    id: str
    deleted: bool
    object: Literal["file"] = "file"


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool
