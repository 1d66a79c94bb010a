"""Shared fixtures: real ftapi server processes over every storage x database combination.

`server` is parametrized: local disk or S3 (moto's server as its own process) x SQLite or PostgreSQL.
Each test gets a fresh project and key, so tests never see each other's objects.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from tests.support.moto_server import run_moto_server
from tests.support.postgres import temporary_database
from tests.support.server import RunningServer, run_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ADMIN_KEY = "sk-test-admin-" + secrets.token_hex(8)
MAX_FILE_BYTES = 24 * 1024 * 1024
MAX_PART_BYTES = 8 * 1024 * 1024
COMBOS = ["local-sqlite", "s3-sqlite", "local-postgres", "s3-postgres"]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with run_moto_server() as endpoint:
        yield endpoint


def s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    return {
        "FTAPI_STORAGE_BACKEND": "s3",
        "FTAPI_S3__BUCKET": bucket,
        "FTAPI_S3__ENDPOINT_URL": endpoint,
        "FTAPI_S3__ACCESS_KEY_ID": "testing",
        "FTAPI_S3__SECRET_ACCESS_KEY": "testing",
        "FTAPI_S3__PREFIX": "ftapi",
        "FTAPI_S3__CREATE_BUCKET": "true",
        "FTAPI_S3__PART_SIZE": str(5 * 1024 * 1024),
    }


@contextmanager
def combo_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    combo: str,
    extra: dict[str, str],
    label: str | None = None,
) -> Iterator[RunningServer]:
    storage, database = combo.split("-")
    env = {
        "FTAPI_API_KEY": ADMIN_KEY,
        "FTAPI_SWEEP_INTERVAL_SECONDS": "1",
        "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.2",
        # Small caps keep the over-size tests quick; the defaults are checked in test_settings.
        "FTAPI_MAX_FILE_BYTES": str(MAX_FILE_BYTES),
        "FTAPI_MAX_UPLOAD_PART_BYTES": str(MAX_PART_BYTES),
        **extra,
    }
    if storage == "s3":
        endpoint = request.getfixturevalue("moto_endpoint")
        env |= s3_env(endpoint, "ftapi-" + secrets.token_hex(4))
    data_dir = tmp_path_factory.mktemp(label or combo)
    if database == "postgres":
        with temporary_database() as url:
            env["FTAPI_DATABASE_URL"] = url
            with run_server(data_dir, env) as srv:
                yield srv
    else:
        with run_server(data_dir, env) as srv:
            yield srv


@pytest.fixture(scope="session", params=COMBOS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """An API server that validates jobs but runs no trainers (an API-only replica)."""
    with combo_server(request, tmp_path_factory, request.param, {"FTAPI_MAX_CONCURRENT_JOBS": "0"}) as srv:
        yield srv


TRAINING_CATALOGUE = [
    {"id": "tiny-chat", "source": "builtin:tiny-chat", "max_length": 512, "base_learning_rate": 5e-3},
    {
        "id": "tiny-chat-full",
        "source": "builtin:tiny-chat",
        "mode": "full",
        "max_length": 512,
        "base_learning_rate": 1e-3,
    },
]


@pytest.fixture(scope="session", params=["local-sqlite", "s3-postgres"])
def training_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server that also runs trainers (one at a time), on two backend combinations.

    Its catalogue offers tiny-chat for LoRA and, as `tiny-chat-full`, for full fine-tuning."""
    models = tmp_path_factory.mktemp("catalogue") / "models.json"
    models.write_text(json.dumps(TRAINING_CATALOGUE))
    extra = {"FTAPI_MAX_CONCURRENT_JOBS": "1", "FTAPI_MODELS_FILE": str(models)}
    with combo_server(request, tmp_path_factory, request.param, extra, label="train-" + request.param) as srv:
        yield srv


def database_url(server: RunningServer) -> str:
    return server.env.get("FTAPI_DATABASE_URL") or f"sqlite:///{(server.data_dir / 'ftapi.db').resolve()}"


@dataclass(frozen=True)
class Project:
    id: str
    key: str


def new_project(server: RunningServer, name: str | None = None) -> Project:
    """A brand-new project and key, written straight to the server's database."""
    from api.auth import create_key, ensure_project
    from api.db.session import create_engine, session_factory

    async def run() -> Project:
        engine = create_engine(database_url(server))
        try:
            async with session_factory(engine)() as session:
                project_name = name or "p-" + secrets.token_hex(6)
                key = await create_key(session, project_name)
                row = await ensure_project(session, project_name)
                await session.commit()
                return Project(id=row.id, key=key)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@pytest.fixture
def project(server: RunningServer) -> Project:
    return new_project(server)


@pytest.fixture
def api_key(project: Project) -> str:
    return project.key


@pytest.fixture
def client(server: RunningServer, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=api_key, _strict_response_validation=True)


@pytest.fixture
def lenient_client(server: RunningServer, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=api_key)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Mark by backend so `-m "not postgres"` / `-m "not s3"` select what a machine can run.
    for item in items:
        callspec = getattr(item, "callspec", None)
        combo = (
            (callspec.params.get("server") or callspec.params.get("training_server")) if callspec else None
        )
        if isinstance(combo, str):
            if "s3" in combo:
                item.add_marker(pytest.mark.s3)
            if "postgres" in combo:
                item.add_marker(pytest.mark.postgres)


@pytest.fixture
def data_path(tmp_path: Path) -> Path:
    return tmp_path
