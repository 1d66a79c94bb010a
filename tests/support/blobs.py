"""Look at what a server really stored, from outside its code: the blob directory or the S3 bucket."""

from __future__ import annotations

from typing import Any

import boto3

from tests.support.server import RunningServer


def _s3(env: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=env["FTAPI_S3__ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


def stored_keys(server: RunningServer, prefix: str) -> list[str]:
    env = server.env
    if env.get("FTAPI_STORAGE_BACKEND") == "s3":
        s3 = _s3(env)
        base = env.get("FTAPI_S3__PREFIX", "").strip("/")
        full = f"{base}/{prefix}" if base else prefix
        keys: list[str] = []
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=env["FTAPI_S3__BUCKET"], Prefix=full
            ):
                keys += [o["Key"][len(base) + 1 if base else 0 :] for o in page.get("Contents", [])]
        except s3.exceptions.NoSuchBucket:
            pass  # the server creates its bucket on the first write: nothing was ever stored
        return keys
    root = server.data_dir / "blobs"
    return sorted(str(p.relative_to(root)) for p in root.glob(prefix + "**/*") if p.is_file())


def stored_bytes(server: RunningServer, key: str) -> bytes:
    """One blob's content, from the blob directory or the bucket (under the server's prefix)."""
    env = server.env
    if env.get("FTAPI_STORAGE_BACKEND") == "s3":
        base = env.get("FTAPI_S3__PREFIX", "").strip("/")
        full = f"{base}/{key}" if base else key
        return bytes(_s3(env).get_object(Bucket=env["FTAPI_S3__BUCKET"], Key=full)["Body"].read())
    return (server.data_dir / "blobs" / key).read_bytes()


def open_multipart_uploads(server: RunningServer) -> list[str]:
    """In-progress S3 multipart uploads (orphans if any remain after a request ends)."""
    env = server.env
    if env.get("FTAPI_STORAGE_BACKEND") != "s3":
        return []
    s3 = _s3(env)
    try:
        found = s3.list_multipart_uploads(Bucket=env["FTAPI_S3__BUCKET"])
    except s3.exceptions.NoSuchBucket:
        return []
    return [u["Key"] for u in found.get("Uploads", [])]
