"""Cross-cutting guarantees: schema = migrations, no heavy imports, one access-log line per request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from api.db.base import Base
from api.db.migrate import upgrade
from api.db.session import driver_url
from api.settings import Settings
from tests.support.postgres import temporary_database
from tests.support.server import RunningServer


def assert_migrations_match_models(url: str) -> None:
    upgrade(url)
    engine = create_engine(driver_url(url, asynchronous=False))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ: {diff}"


def test_migrations_match_models_on_sqlite(tmp_path: Path) -> None:
    assert_migrations_match_models(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
def test_migrations_match_models_on_postgres() -> None:
    with temporary_database() as url:
        assert_migrations_match_models(url)


@pytest.mark.postgres
def test_replicas_starting_together_migrate_once() -> None:
    """Several API replicas and workers start on a fresh database: each runs the migrations; none
    may fail on the tables another is creating."""
    with temporary_database() as url:
        code = "import sys; from api.db.migrate import upgrade; upgrade(sys.argv[1])"
        starts = [
            subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE) for _ in range(4)
        ]
        errors = [p.communicate(timeout=120)[1].decode() for p in starts]
        assert [p.returncode for p in starts] == [0] * 4, errors
        assert_migrations_match_models(url)


def test_api_imports_no_ml_stack() -> None:
    code = (
        "import sys, api.app, api.cli, trainer.data.validate\n"
        "heavy = {'torch', 'transformers', 'peft', 'trl', 'datasets', 'vllm'} & set(sys.modules)\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_settings_defaults_follow_openai_limits(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.max_file_bytes == 512 * 1024 * 1024
    assert s.max_upload_part_bytes == 64 * 1024 * 1024
    assert s.max_upload_bytes == 8 * 1024**3
    assert s.upload_ttl_seconds == 3600
    assert s.resolved_database_url.startswith("sqlite:///")


def test_each_request_is_logged_once_with_its_id(server: RunningServer, api_key: str) -> None:
    r = httpx.get(
        server.base_url + "/files", params={"limit": 3}, headers={"Authorization": f"Bearer {api_key}"}
    )
    request_id = r.headers["x-request-id"]
    httpx.get(server.url + "/health")  # a later request flushes nothing; the log is line-buffered
    lines = [json.loads(x) for x in server.log_text().splitlines() if request_id in x]
    access = [x for x in lines if x.get("event") == "request"]
    assert len(access) == 1
    entry = access[0]
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/v1/files", 200)
    assert entry["duration_ms"] >= 0 and entry["request_id"] == request_id


def test_import_contracts_hold() -> None:
    """Imports flow one way (pyproject's [tool.importlinter]): storage is a leaf; trainer and
    serving never import api."""
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stdout + result.stderr
