"""The `ftapi` command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openai

from tests.support.data import chat_jsonl
from tests.support.server import run_server


def ftapi(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_first_start_prints_a_key_once_and_keys_create_works_while_serving(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "FTAPI_API_KEY"}
    with run_server(data, {}) as srv:
        pass
    log = srv.log_text()
    printed = [w for w in log.split() if w.startswith("sk-")]
    assert len(printed) >= 1
    bootstrap_key = printed[0]
    with run_server(data, {}) as srv:
        assert "sk-" not in srv.log_text().replace(bootstrap_key, "")  # not printed again
        client = openai.OpenAI(base_url=srv.base_url, api_key=bootstrap_key, _strict_response_validation=True)
        assert list(client.files.list()) == []
        created = ftapi("keys", "create", "--project", "team-a", "--data-dir", str(data), env=env)
        assert created.returncode == 0, created.stderr
        new_key = created.stdout.strip()
        assert new_key.startswith("sk-") and "\n" not in new_key
        team_a = openai.OpenAI(base_url=srv.base_url, api_key=new_key, _strict_response_validation=True)
        team_a.files.create(file=("a.jsonl", chat_jsonl()), purpose="fine-tune")
        assert list(client.files.list()) == []  # another project
        assert len(list(team_a.files.list())) == 1
    # Keys are stored only as hashes.
    assert new_key.encode() not in (data / "ftapi.db").read_bytes()


def test_validate_command(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(chat_jsonl(12))
    ok = ftapi("validate", str(good))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "12" in ok.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(chat_jsonl(2) + b'{"messages": [{"role": "robot", "content": "x"}]}\n')
    res = ftapi("validate", str(bad))
    assert res.returncode == 1
    assert "Line 3" in res.stdout
    as_json = ftapi("validate", "--json", str(bad))
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
