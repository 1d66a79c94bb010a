"""A real vLLM server on tiny-chat for serving tests, started once per test session.

Import the fixtures you use into a test module (or a conftest), e.g.
`from tests.support.vllm import vllm_engine, vllm_server  # noqa: F401`; tests that use them run on
the session's event loop (`pytest.mark.asyncio(loop_scope="session")`), where the server's supervisor
task lives. pytest makes one fixture instance per module that imports a fixture, so the server and
the trained adapter are shared through this module instead: however many modules import them,
vLLM starts once (about 50 s) and the adapter is trained once.

- `vllm_server` → VllmForTests: the ManagedVllmServer and where tiny-chat was built.
- `vllm_engine` → a fresh VllmEngine on that server (closed after the test);
  `vllm_engine_for_tests(vllm, **kwargs)` builds one by hand (kwargs go to VllmEngine).
- `sentiment_lora` → LocalModel of a LoRA adapter tuned on the sentiment task, through WeightsCache.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from serving.cache import WeightsCache
from serving.models import LocalModel
from serving.vllm import VllmConfig, VllmEngine, start_vllm_engine
from serving.vllm_server import ManagedVllmServer
from storage.local import LocalBlobStore
from tests.support.adapters import TrainedModel, train_sentiment
from tests.support.moto_server import free_port
from trainer.tiny import TINY_CHAT, build_tiny_chat

MAX_LORA_RANK = 16
ADAPTER_NAME = "ft:tiny-chat:proj-vllm:sentiment:abc12345"


@dataclass(frozen=True)
class VllmForTests:
    server: ManagedVllmServer
    workdir: Path  # tiny-chat is built in workdir/cache, as train_sentiment(workdir) expects
    base_path: Path

    def base_model(self, name: str = TINY_CHAT) -> LocalModel:
        """tiny-chat as the API would hand it over; another `name` plays a differently named base."""
        return LocalModel(name=name, base_id=TINY_CHAT, base_path=str(self.base_path), kind="base")


@asynccontextmanager
async def running_vllm(
    model_dir: Path,
    workdir: Path,
    *,
    served_name: str = TINY_CHAT,
    max_lora_rank: int = MAX_LORA_RANK,
    max_loras: int = 4,
    ready_timeout: float = 300,
) -> AsyncIterator[ManagedVllmServer]:
    """A ManagedVllmServer on a free port, ready when entered, stopped (whole process group) on exit.

    Started the way the API starts it (serving.vllm.start_vllm_engine), so the tests cover that path.
    """
    config = VllmConfig(
        port=free_port(), max_lora_rank=max_lora_rank, max_loras=max_loras, startup_timeout=ready_timeout
    )
    owner = await start_vllm_engine(config, served_name, str(model_dir), workdir)
    assert owner.server is not None
    try:
        yield owner.server
    finally:
        await owner.aclose()


def tiny_chat_workdir(factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One directory per session holding tiny-chat (built once, returned second) and what is trained on it."""
    workdir = factory.getbasetemp() / "tiny-chat-serving"
    return workdir, build_tiny_chat(workdir / "cache")


@functools.cache
def _trained_lora(workdir: Path) -> TrainedModel:
    return train_sentiment(workdir, "lora")


class _SharedServer:
    """The session's one server, counted in and out by every module's copy of the fixture."""

    def __init__(self) -> None:
        self.value: VllmForTests | None = None
        self.users = 0
        self.stack = AsyncExitStack()
        self.lock = asyncio.Lock()

    async def acquire(self, factory: pytest.TempPathFactory) -> VllmForTests:
        async with self.lock:
            if self.value is None:
                workdir, base = await asyncio.to_thread(tiny_chat_workdir, factory)
                server = await self.stack.enter_async_context(running_vllm(base, workdir))
                self.value = VllmForTests(server=server, workdir=workdir, base_path=base)
            self.users += 1
            return self.value

    async def release(self) -> None:
        async with self.lock:
            self.users -= 1
            if self.users == 0:
                self.value = None
                await self.stack.aclose()
                self.stack = AsyncExitStack()


_shared = _SharedServer()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[VllmForTests]:
    vllm = await _shared.acquire(tmp_path_factory)
    try:
        yield vllm
    finally:
        await _shared.release()


def vllm_engine_for_tests(vllm: VllmForTests, **kwargs: Any) -> VllmEngine:
    """A VllmEngine on the session's server; it does not own the server (aclose leaves it running)."""
    return VllmEngine(vllm.server.url, TINY_CHAT, max_lora_rank=MAX_LORA_RANK, **kwargs)


@pytest_asyncio.fixture(loop_scope="session")
async def vllm_engine(vllm_server: VllmForTests) -> AsyncIterator[VllmEngine]:
    engine = vllm_engine_for_tests(vllm_server)
    try:
        yield engine
    finally:
        await engine.aclose()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def sentiment_lora(tmp_path_factory: pytest.TempPathFactory) -> LocalModel:
    """The tuned adapter as the API hands it to an engine: copied from storage into the weights cache."""
    workdir, base = await asyncio.to_thread(tiny_chat_workdir, tmp_path_factory)
    trained = await asyncio.to_thread(_trained_lora, workdir)
    cache = WeightsCache(workdir / "weights", LocalBlobStore(trained.store_root))
    weights_dir = await cache.materialize(trained.weights_prefix)
    return LocalModel(
        name=ADAPTER_NAME,
        base_id=TINY_CHAT,
        base_path=str(base),
        kind="lora",
        weights_dir=weights_dir,
        lora_rank=MAX_LORA_RANK,
    )
