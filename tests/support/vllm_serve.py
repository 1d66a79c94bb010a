"""`ftapi serve --engine vllm` for tests: the product path, where ftapi starts and supervises vLLM.

`serve_with_vllm` runs the server with a managed vLLM server on a port of its own and makes sure no
vLLM process outlives it; the vLLM environment is installed first (minutes on a fresh machine, once),
before the server's start-up clock runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from serving.vllm_env import ensure_vllm_env
from tests.support.moto_server import free_port
from tests.support.server import RunningServer, run_server


@dataclass(frozen=True)
class ServedWithVllm:
    server: RunningServer
    vllm_port: int

    @property
    def vllm_url(self) -> str:
        return f"http://127.0.0.1:{self.vllm_port}"

    def vllm_model_ids(self) -> list[str]:
        """What vLLM itself serves (base and loaded adapters), asked directly."""
        return [m["id"] for m in httpx.get(self.vllm_url + "/v1/models").json()["data"]]


def vllm_processes(port: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "vllm.entrypoints.openai.api_server" in " ".join(cmdline) and str(port) in cmdline:
            found.append(proc)
    return found


def wait_for_engine(server: RunningServer, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(server.url + "/ready").json()["engines"].get("vllm") != "ok":
        assert time.monotonic() < deadline, server.log_text()[-3000:]
        time.sleep(1)


@contextmanager
def serve_with_vllm(
    data_dir: Path, env: dict[str, str], ready_timeout: float = 600
) -> Iterator[ServedWithVllm]:
    """The server is up (files and jobs work) when this yields; vLLM may still be starting:
    `wait_for_engine` waits for it."""
    ensure_vllm_env()
    port = free_port()
    try:
        with run_server(
            data_dir,
            {**env, "FTAPI_ENGINE": "vllm", "FTAPI_VLLM__PORT": str(port)},
            ready_timeout=ready_timeout,
        ) as server:
            yield ServedWithVllm(server, port)
    finally:
        for proc in vllm_processes(port):  # nothing may outlive the test
            proc.kill()
