"""The vLLM engine: one vLLM OpenAI server per base model, tuned LoRA adapters loaded into it at run time.

Chat requests are forwarded to the server's /v1/chat/completions with `model` swapped for the name
vLLM knows; adapters are registered under their public names, so vLLM's answers already carry them
(only the base model may need its name rewritten). Streams are passed through event by event without
being decoded. vLLM forgets runtime adapters when it restarts and answers 404 for their names: that
404 is the signal to load the adapter again and retry once.

The hop uses aiohttp with one pooled session: httpx's pool collapsed under concurrency in a probe.
Only paths inside our own weights cache (LocalModel.weights_dir) are ever sent to vLLM, and each is
checked again here before loading, because vLLM unpickles .bin/.pt adapters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from pydantic import BaseModel, field_validator

from serving.cache import check_weights_dir
from serving.errors import EngineError, EngineRequestError, EngineUnavailable, UpstreamError
from serving.models import LocalModel
from serving.process import parse_cpu_list
from serving.vllm_env import ensure_vllm_env
from serving.vllm_server import ManagedVllmServer, VllmServerConfig

log = structlog.get_logger()

DONE_EVENT = b"data: [DONE]\n\n"
# No total timeout: a long generation is not a failure. Connecting to a loopback server is instant
# unless it is down or wedged.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)
CONTROL_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)
HEALTH_TIMEOUT = aiohttp.ClientTimeout(total=2)
KEEPALIVE_SECONDS = 3.0  # below uvicorn's 5 s default keep-alive, which vLLM serves with


class VllmConfig(BaseModel):
    """How the API reaches vLLM: an external server at `url`, or a managed child process."""

    base_model: str | None = None  # the catalogue id this server serves (default: the first entry)
    url: str | None = None  # an external server (its base model must be the catalogue model)
    served_name: str | None = None  # the external server's name for its base model (default: its id)
    cache_path_in_server: str | None = None  # where an external server sees our weights cache
    port: int = 8011  # managed server, loopback only
    max_lora_rank: int = 16
    max_loras: int = 8
    max_model_len: int = 512
    env_dir: Path | None = None  # the managed server's venv (default: serving.vllm_env)
    startup_timeout: float = 300
    # The managed server's CPUs ("0-13"): on a small CPU host, leaving the API a core of its own keeps
    # vLLM's busy-polling processes from starving it (bench.serve measures both ways).
    cpus: str | None = None

    @field_validator("cpus")
    @classmethod
    def _cpu_list(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cpu_list(value)
        return value


class VllmEngine:
    """InferenceEngine over one vLLM server that serves `base_id` and LoRA adapters on it.

    `path_map` = (local prefix, server prefix) rewrites adapter paths for a server that mounts our
    weights cache elsewhere (a container). The engine owns `server` when given one: `aclose()`
    stops it. Without one the server's lifetime is someone else's business.
    """

    name = "vllm"

    def __init__(
        self,
        base_url: str,
        base_id: str,
        *,
        served_base_name: str | None = None,
        max_lora_rank: int = 16,
        path_map: tuple[Path, str] | None = None,
        server: ManagedVllmServer | None = None,
    ) -> None:
        # The server root; an OpenAI-style ".../v1" URL is accepted too.
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.base_id = base_id
        self.served_base_name = served_base_name or base_id
        self.max_lora_rank = max_lora_rank
        self.path_map = path_map
        self.server = server
        self._http: aiohttp.ClientSession | None = None
        self._loaded: set[str] = set()  # adapters we registered; vLLM may have forgotten them since
        self._locks: dict[str, asyncio.Lock] = {}

    def serves(self, model: LocalModel) -> bool:
        if model.base_id != self.base_id or model.kind not in ("base", "lora"):
            return False
        # An unknown rank is tried: vLLM refuses too large an adapter when loading it.
        return model.kind == "base" or model.lora_rank is None or model.lora_rank <= self.max_lora_rank

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            # limit=0: no cap on pooled connections, vLLM batches whatever arrives.
            # Idle connections are dropped before vLLM's uvicorn closes them (after 5 s): reusing
            # one just as the server closes it fails the request for nothing.
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_SECONDS),
                timeout=REQUEST_TIMEOUT,
            )
        return self._http

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _vllm_name(self, model: LocalModel) -> str:
        return self.served_base_name if model.kind == "base" else model.name

    def _server_path(self, weights_dir: Path) -> str:
        if self.path_map is None:
            return str(weights_dir)
        local, remote = self.path_map
        return str(Path(remote) / weights_dir.relative_to(local))

    async def load(self, model: LocalModel) -> None:
        if not self.serves(model):
            raise EngineRequestError(
                f"The model `{model.name}` cannot be served by the vLLM engine.",
                param="model",
                code="model_not_available",
            )
        if model.kind == "base" or model.name in self._loaded:
            return  # the server was started with the base; vLLM's 404 tells when it lost an adapter
        async with self._locks.setdefault(model.name, asyncio.Lock()):
            if model.name not in self._loaded:
                await self._register(model)

    async def _register(self, model: LocalModel) -> None:
        if model.weights_dir is None:
            raise UpstreamError(f"The model `{model.name}` has no local weights to load.")
        await asyncio.to_thread(check_weights_dir, model.weights_dir)
        payload = {"lora_name": model.name, "lora_path": self._server_path(model.weights_dir)}
        started = asyncio.get_running_loop().time()
        status, body = await self._post_json("/v1/load_lora_adapter", payload)
        if status != 200 and not (status == 400 and await self._listed(model.name)):
            # vLLM's message may name paths: it goes to the log, not to the client.
            log.error("vllm.load_failed", model=model.name, status=status, detail=body[:2000])
            raise UpstreamError(f"The model `{model.name}` could not be loaded.", status=500)
        self._loaded.add(model.name)
        took_ms = round((asyncio.get_running_loop().time() - started) * 1000, 1)
        log.info("vllm.adapter_loaded", model=model.name, ms=took_ms)

    async def _listed(self, name: str) -> bool:
        """Whether vLLM lists `name` among its models (how an "already loaded" 400 is told apart)."""
        try:
            async with self._session().get(self._url("/v1/models"), timeout=CONTROL_TIMEOUT) as resp:
                data = await resp.json() if resp.status == 200 else {}
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        return any(m.get("id") == name for m in data.get("data", []))

    async def unload(self, name: str) -> None:
        if name == self.served_base_name:
            return
        async with self._locks.setdefault(name, asyncio.Lock()):
            self._loaded.discard(name)
            status, body = await self._post_json("/v1/unload_lora_adapter", {"lora_name": name})
            if status not in (200, 404):  # 404: vLLM did not know it (never loaded, or restarted)
                log.error("vllm.unload_failed", model=name, status=status, detail=body[:2000])
                raise UpstreamError(f"The model `{name}` could not be unloaded.", status=500)

    async def _post_json(self, path: str, payload: Mapping[str, Any]) -> tuple[int, str]:
        try:
            async with self._session().post(self._url(path), json=payload, timeout=CONTROL_TIMEOUT) as resp:
                return resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _unavailable(exc) from exc

    async def chat(self, model: LocalModel, body: dict[str, Any]) -> dict[str, Any]:
        request = {k: v for k, v in body.items() if k != "stream_options"} | {"stream": False}
        for attempt in (1, 2):
            await self.load(model)
            request["model"] = self._vllm_name(model)
            try:
                async with self._session().post(self._url("/v1/chat/completions"), json=request) as resp:
                    if resp.status == 200:
                        completion: dict[str, Any] = await resp.json()
                        completion["model"] = model.name
                        return completion
                    error = await _error_from(resp)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _unavailable(exc) from exc
            if not self._forgotten(model, error, attempt):
                raise error
        raise AssertionError("unreachable")

    async def chat_stream(self, model: LocalModel, body: dict[str, Any]) -> AsyncIterator[bytes]:
        request = {**body, "stream": True}
        for attempt in (1, 2):
            await self.load(model)
            request["model"] = self._vllm_name(model)
            async with contextlib.AsyncExitStack() as stack:
                try:
                    resp = await stack.enter_async_context(
                        self._session().post(self._url("/v1/chat/completions"), json=request)
                    )
                    error = None if resp.status == 200 else await _error_from(resp)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise _unavailable(exc) from exc
                if error is None:
                    async for event in self._relay(resp, model):
                        yield event
                    return
            if not self._forgotten(model, error, attempt):
                raise error

    async def _relay(self, resp: aiohttp.ClientResponse, model: LocalModel) -> AsyncIterator[bytes]:
        """vLLM's events, whole and in order; the public model name swapped in when it differs."""
        old = b'"model":' + json.dumps(self._vllm_name(model), ensure_ascii=False).encode()
        new = b'"model":' + json.dumps(model.name, ensure_ascii=False).encode()
        rename = old != new
        pending = b""
        sent_any = False
        try:
            async for data in resp.content.iter_any():
                pending += data
                # Whole events only: the consumer may append an error event after any of them.
                *events, pending = pending.split(b"\n\n")
                for event in events:
                    if not event.strip():
                        continue
                    chunk = event + b"\n\n"
                    if rename:
                        chunk = chunk.replace(old, new, 1)
                    sent_any = True
                    yield chunk
                    if chunk == DONE_EVENT:
                        return
        except (aiohttp.ClientError, TimeoutError) as exc:
            if not sent_any:
                raise _unavailable(exc) from exc
            log.warning("vllm.stream_broken", model=model.name, error=repr(exc))
        else:
            if not sent_any:
                raise UpstreamError("The vLLM engine ended the response without any event.", status=502)
            log.warning("vllm.stream_truncated", model=model.name)
        yield _error_event("The model server stopped answering in the middle of the response.")

    def _forgotten(self, model: LocalModel, error: EngineError, attempt: int) -> bool:
        """Whether `error` says vLLM lost the adapter; if so it is forgotten here too, to be reloaded."""
        if attempt > 1 or model.kind != "lora" or error.status != 404 or error.param != "model":
            return False
        log.info("vllm.adapter_reload", model=model.name)
        self._loaded.discard(model.name)
        return True

    async def ready(self) -> bool:
        if self.server is not None and self.server.pid is None:
            return False
        try:
            async with self._session().get(self._url("/health"), timeout=HEALTH_TIMEOUT) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self.server is not None:
            await self.server.aclose()


async def _error_from(resp: aiohttp.ClientResponse) -> EngineError:
    """vLLM's error envelope {"error": {message, type, param, code}} as one of our errors."""
    text = await resp.text()
    message, param = f"The model server answered with status {resp.status}.", None
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        detail = json.loads(text)["error"]
        message = str(detail.get("message") or message)
        param = detail.get("param")
        # vLLM's own request validation names fields "body.messages"; OpenAI names them "messages".
        param = param.removeprefix("body.") if isinstance(param, str) else None
    if resp.status == 400:
        return EngineRequestError(message, param=param)
    if resp.status == 503:
        return EngineUnavailable("The model server is busy or starting; try again shortly.")
    return UpstreamError(message, status=resp.status, param=param)


def _unavailable(exc: BaseException) -> EngineUnavailable:
    log.warning("vllm.unreachable", error=repr(exc))
    return EngineUnavailable("The model server cannot be reached right now; try again shortly.")


def _error_event(message: str) -> bytes:
    error = {"message": message, "type": "server_error", "param": None, "code": None}
    return b"data: " + json.dumps({"error": error}).encode() + b"\n\n"


async def start_vllm_engine(
    config: VllmConfig, base_id: str, base_path: str, cache_root: Path, *, wait: bool = True
) -> VllmEngine:
    """A VllmEngine for `base_id`: on `config.url`, or on a managed server it starts and owns.

    The managed server serves `base_path` under the name `base_id`, keeps its vLLM cache and log in
    `cache_root / "vllm"`, and is ready when this returns (TimeoutError/VllmExited otherwise);
    with `wait=False` it is still starting (the API serves files and jobs meanwhile, chat answers 503).
    The environment is installed first if it is missing (minutes, once per machine).
    """
    if config.url is not None:
        path_map = (cache_root, config.cache_path_in_server) if config.cache_path_in_server else None
        return VllmEngine(
            config.url,
            base_id,
            served_base_name=config.served_name,
            max_lora_rank=config.max_lora_rank,
            path_map=path_map,
        )
    python = await asyncio.to_thread(ensure_vllm_env, config.env_dir)
    workdir = cache_root / "vllm"
    server = ManagedVllmServer(
        VllmServerConfig(
            python=python,
            model_dir=base_path,
            served_name=base_id,
            port=config.port,
            cache_root=workdir / "cache",
            log_path=workdir / "server.log",
            max_lora_rank=config.max_lora_rank,
            max_loras=config.max_loras,
            max_model_len=config.max_model_len,
            cpus=parse_cpu_list(config.cpus) if config.cpus else None,
        )
    )
    await server.start()
    try:
        if wait:
            await server.wait_ready(config.startup_timeout)
    except BaseException:
        await server.aclose()
        raise
    return VllmEngine(server.url, base_id, max_lora_rank=config.max_lora_rank, server=server)
