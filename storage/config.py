"""One configuration model per BlobStore implementation."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

MiB = 1024 * 1024


class LocalStoreConfig(BaseModel):
    root: Path


class S3StoreConfig(BaseModel):
    bucket: str = Field(min_length=3)
    endpoint_url: str | None = None
    region: str = "us-east-1"
    prefix: str = ""
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # boto3 >= 1.36 sends CRC checksums by default; many S3-compatible stores reject them.
    request_checksum_calculation: Literal["when_supported", "when_required"] = "when_required"
    response_checksum_validation: Literal["when_supported", "when_required"] = "when_required"
    part_size: int = Field(default=8 * MiB, ge=5 * MiB)
    max_concurrency: int = Field(default=4, ge=1, le=64)
    create_bucket: bool = False

    def without_credentials(self) -> S3StoreConfig:
        """This config for a process that gets its credentials as boto3's AWS_* variables: a spec
        written to disk or into a manifest never carries them (and pydantic would mask the secret)."""
        return self.model_copy(update={"access_key_id": None, "secret_access_key": None})

    def credentials_env(self) -> dict[str, str]:
        env = {}
        if self.access_key_id:
            env["AWS_ACCESS_KEY_ID"] = self.access_key_id
        if self.secret_access_key:
            env["AWS_SECRET_ACCESS_KEY"] = self.secret_access_key.get_secret_value()
        return env
