"""A vLLM OpenAI server run as our child process: started, restarted when it dies, stopped with us.

The server binds to loopback only: its runtime LoRA routes load any path they are given, so nothing
but our own engine may reach it. It runs in its own process group because vLLM forks an engine-core
and a worker process that outlive a killed API process and keep the port, the memory and the cores;
stopping or restarting always signals the whole group. Its output goes to a log file, not ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import structlog

from serving.process import child_setup

log = structlog.get_logger()

HOST = "127.0.0.1"
HEALTHY_RUN_SECONDS = 120.0  # a server that ran this long before dying restarts without delay growth
MAX_BACKOFF_SECONDS = 30.0


@dataclass(frozen=True)
class VllmServerConfig:
    python: Path  # the python of the vLLM environment (serving.vllm_env.ensure_vllm_env)
    model_dir: str  # the base model: a local directory (or a hub id where the network allows)
    served_name: str  # the name vLLM answers for the base model
    port: int
    cache_root: Path  # VLLM_CACHE_ROOT: compiled kernels and such, instead of ~/.cache/vllm
    log_path: Path
    max_lora_rank: int = 16
    max_loras: int = 8
    max_model_len: int = 512
    kv_cache_gib: int = 1  # VLLM_CPU_KVCACHE_SPACE; vLLM's CPU default (4 GiB) is sized for real models
    extra_args: tuple[str, ...] = field(default=())
    # The CPUs the server's processes may run on (None: all). vLLM binds its worker's OpenMP threads
    # inside this set; the cores left out are free for the API in front of it.
    cpus: frozenset[int] | None = None

    def command(self) -> list[str]:
        # `python -m`, not the `vllm` script: the script's metadata is named vllm-cpu and fails.
        return [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model_dir,
            "--served-model-name", self.served_name,
            "--host", HOST,
            "--port", str(self.port),
            "--enable-lora",
            "--max-lora-rank", str(self.max_lora_rank),
            "--max-loras", str(self.max_loras),
            "--max-model-len", str(self.max_model_len),
            "--disable-uvicorn-access-log",
            *self.extra_args,
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        env = {
            **os.environ,
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
            "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib),
            "VLLM_CACHE_ROOT": str(self.cache_root),
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }
        if Path(self.model_dir).is_dir():  # a local model never needs the hub; don't wait on it
            env["HF_HUB_OFFLINE"] = "1"
        return env


class VllmExited(RuntimeError):
    """The server process failed while `wait_ready` waited for it (a bad model, a taken port)."""


class ManagedVllmServer:
    """One supervised vLLM server. `start()` spawns it; `aclose()` stops it for good.

    While running, a supervisor task restarts the server whenever it exits (with a delay that grows
    while it keeps failing). The restarted server has forgotten runtime LoRA adapters: clients reload
    them when vLLM answers 404 for their names.
    """

    def __init__(self, config: VllmServerConfig) -> None:
        self.config = config
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._failures: list[int] = []  # exit codes of runs that failed on their own (not signalled)
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.config.port}"

    @property
    def pid(self) -> int | None:
        """The pid of the running server process (it changes on every restart)."""
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    async def start(self) -> None:
        if self._supervisor is not None:
            raise RuntimeError("ManagedVllmServer.start() was already called")
        self.config.cache_root.mkdir(parents=True, exist_ok=True)
        self.config.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._proc = await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"vllm-supervisor:{self.config.port}")

    async def _spawn(self) -> asyncio.subprocess.Process:
        with self.config.log_path.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *self.config.command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=self.config.environment(),
                start_new_session=True,  # its own process group, see the module docstring
                preexec_fn=functools.partial(child_setup, self.config.cpus),  # no orphan keeps the port
            )
        log.info("vllm.started", pid=proc.pid, port=self.config.port, log_path=str(self.config.log_path))
        return proc

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 1.0
        while True:
            assert self._proc is not None
            started = loop.time()
            code = await self._proc.wait()
            _kill_group(self._proc.pid, signal.SIGKILL)  # the engine-core and worker left behind
            if self._closing:
                return
            if code > 0:
                self._failures.append(code)
            ran = loop.time() - started
            if ran > HEALTHY_RUN_SECONDS:
                backoff = 1.0
            log.warning("vllm.exited", returncode=code, ran_seconds=round(ran, 1), restart_in=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            if self._closing:
                return
            try:
                self._proc = await self._spawn()
            except OSError as exc:
                # E.g. its environment vanished. The old process stays exited: the loop tries again later.
                log.error("vllm.restart_failed", error=repr(exc))
                continue
            self.restarts += 1

    async def wait_ready(self, timeout: float) -> None:  # noqa: ASYNC109 (the TimeoutError names vLLM)
        """Return once GET /health answers 200.

        Raises TimeoutError after `timeout` seconds, VllmExited when a server process fails with an
        error while waiting (its restart would most likely fail the same way).
        """
        failures = len(self._failures)
        deadline = asyncio.get_running_loop().time() + timeout
        probe_timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=probe_timeout) as http:
            while True:
                if len(self._failures) > failures:
                    log.error("vllm.failed_to_start", log_tail=self.log_tail())
                    raise VllmExited(
                        f"vLLM exited with code {self._failures[-1]} while starting; see its log"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(self.url + "/health") as resp:
                        if resp.status == 200 and self.pid is not None:
                            return
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"vLLM was not ready after {timeout:.0f} s")
                await asyncio.sleep(0.5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            with self.config.log_path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""

    async def aclose(self, grace: float = 15.0) -> None:
        """Stop the server and its children: SIGTERM to the group, SIGKILL after `grace` seconds."""
        self._closing = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            _kill_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                log.warning("vllm.kill_after_grace", pid=proc.pid)
        if proc is not None:
            _kill_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        log.info("vllm.stopped", port=self.config.port)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
