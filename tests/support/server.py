"""A real ftapi server process for tests: `ftapi serve` on a free port, torn down afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.moto_server import free_port, stop


@dataclass
class RunningServer:
    pid: int
    url: str
    data_dir: Path
    env: dict[str, str]
    log_path: Path

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_server(
    data_dir: Path,
    extra_env: dict[str, str],
    *,
    ready_timeout: float = 60,
    port: int | None = None,
    log_name: str = "server.log",
) -> Iterator[RunningServer]:
    """`port`: a fixed one, for a server that restarts where its trainers report to. `log_name`: a
    second process on the same data directory (a replica, a restart beside the first) logs apart."""
    port = port or free_port()
    env = {
        **os.environ,
        "FTAPI_LOG_FORMAT": "json",
        "FTAPI_DATA_DIR": str(data_dir),
        "HF_HUB_OFFLINE": "1",
        **extra_env,
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / log_name
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    server = RunningServer(pid=proc.pid, url=url, data_dir=data_dir, env=env, log_path=log_path)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ftapi serve exited with {proc.returncode}:\n{server.log_text()[-4000:]}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"ftapi serve did not start:\n{server.log_text()[-4000:]}")
            time.sleep(0.1)
        yield server
    finally:
        stop(proc, grace=15)
