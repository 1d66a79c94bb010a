"""A real MLflow tracking server for tests (`mlflow server`, SQLite backend in a temporary
directory, on a free port), and a few reads of its REST API."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.moto_server import free_port, stop


@contextmanager
def run_mlflow_server(workdir: Path, ready_timeout: float = 240) -> Iterator[str]:
    """Yields the tracking URI. Start-up takes a while (its database migrations run first)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / "mlflow.log"
    mlflow = Path(sys.executable).with_name("mlflow")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                str(mlflow), "server",
                "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
                "--default-artifact-root", str(workdir / "artifacts"),
                "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(uri + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (
                f"mlflow server did not start:\n{log_path.read_text()[-3000:]}"
            )
            time.sleep(0.5)
        yield uri
    finally:
        stop(proc, grace=10)


def mlflow_api(uri: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    response = httpx.request(method, f"{uri}/api/2.0/mlflow/{path}", timeout=30, **kwargs)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def metric_history(uri: str, run_id: str, key: str) -> dict[int, float]:
    """A run's values of one metric by step."""
    body = mlflow_api(uri, "GET", "metrics/get-history", params={"run_id": run_id, "metric_key": key})
    return {int(m["step"]): float(m["value"]) for m in body.get("metrics", [])}
