"""A real container engine for tests: reach it at DOCKER_HOST (or skip, saying why), and build the
trainer image from this checkout's Dockerfile once per content (a hash of the Dockerfile and the
sources names the tag, so reruns reuse it).

Here: `eval "$(/work/shared/tools/container-engine.sh)"` serves podman's Docker API and sets
DOCKER_HOST and FTAPI_TEST_BASE_IMAGE (a Debian base built offline, used as BASE_IMAGE)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE_INPUTS = ["Dockerfile", ".dockerignore", "pyproject.toml", "README.md"]
SOURCE_DIRS = ["api", "storage", "serving", "trainer", "deploy/image"]


def engine() -> Any:
    """A docker SDK client for DOCKER_HOST; skips the test when there is no engine to talk to."""
    host = os.environ.get("DOCKER_HOST")
    if not host:
        pytest.skip(
            "DOCKER_HOST is not set: start a container engine first "
            '(here: eval "$(/work/shared/tools/container-engine.sh)")'
        )
    import docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        pytest.skip(f"the container engine at DOCKER_HOST={host} does not answer: {exc}")
    return client


def source_hash() -> str:
    digest = hashlib.sha256()
    files = [ROOT / name for name in IMAGE_INPUTS]
    for folder in SOURCE_DIRS:
        files += sorted(p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()[:16]


def build_trainer_image(client: Any) -> str:
    """`ftapi-trainer:test-<hash>` built from the Dockerfile's `trainer` target, reused when it exists."""
    import docker

    tag = f"ftapi-trainer:test-{source_hash()}"
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    base = os.environ.get("FTAPI_TEST_BASE_IMAGE")
    # Both arguments: buildah does not expand `ARG TRAINER_BASE_IMAGE=${BASE_IMAGE}` reliably.
    buildargs = {"BASE_IMAGE": base, "TRAINER_BASE_IMAGE": base} if base else {}
    started = time.monotonic()
    log: list[str] = []
    for chunk in client.api.build(
        path=str(ROOT),
        target="trainer",
        tag=tag,
        buildargs=buildargs,
        network_mode="host",
        rm=True,
        decode=True,
    ):
        if "stream" in chunk:
            log.append(chunk["stream"])
        if "error" in chunk:
            raise RuntimeError(f"building {tag} failed: {chunk['error']}\n{''.join(log)[-4000:]}")
    client.images.get(tag)  # raises if the build produced nothing
    print(f"built {tag} in {time.monotonic() - started:.0f} s")
    return tag


def containers_of(client: Any, job_id: str) -> list[Any]:
    """Every container (running or not) labelled with this job. The SDK lists, then inspects each:
    one removed in between (the executor removes finished ones) makes podman answer 500, so the
    listing is taken again."""
    import docker

    for _ in range(10):
        try:
            return list(client.containers.list(all=True, filters={"label": f"ftapi.job_id={job_id}"}))
        except (docker.errors.NotFound, docker.errors.APIError):
            time.sleep(0.2)
    return list(client.containers.list(all=True, filters={"label": f"ftapi.job_id={job_id}"}))


def remove_containers_of(client: Any, job_id: str) -> None:
    for container in containers_of(client, job_id):
        with contextlib.suppress(Exception):
            container.remove(force=True)
