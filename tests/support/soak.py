"""A soak of one real `ftapi serve` on loopback: files list/retrieve, job list/events, models and
chat (transformers engine, tiny-chat, a few tokens) at a series of concurrency levels, each bounded
in time and in requests. Counts answers by status (any 5xx or connection error is a failure),
latencies per level, and samples the server's open file descriptors, threads and RSS every second.
Used by bench/soak.py (minutes, concurrency 1/32/128) and a short test (no timing assertions).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import openai
import psutil

from tests.conftest import ADMIN_KEY
from tests.support.data import chat_jsonl
from tests.support.jobs import wait_for_status
from tests.support.server import RunningServer, run_server

CHAT = {
    "model": "tiny-chat",
    "messages": [{"role": "user", "content": "Review: it was great."}],
    "max_completion_tokens": 4,
    "temperature": 0,
}


@dataclass
class Sample:
    at: float  # seconds since the soak started
    fds: int
    threads: int
    rss_mb: float


REST_SETTLE_SECONDS = 3.0  # closed connections are gone from the server's fds by then


@dataclass
class Level:
    concurrency: int
    seconds: float
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    span: tuple[float, float] = (0.0, 0.0)  # when it ran, in seconds since the soak started

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def failures(self) -> int:
        return sum(n for s, n in self.statuses.items() if not s.isdigit() or s.startswith("5"))


@dataclass
class SoakResult:
    levels: list[Level]
    samples: list[Sample]
    # The server with no request in flight and the clients' connections closed: before the first
    # level, and after each. What a leak leaves behind grows here; load alone does not.
    at_rest: list[tuple[str, Sample]] = field(default_factory=list)

    def window(self, first: bool, seconds: float = 60, level: Level | None = None) -> list[Sample]:
        """The samples of the first or the last `seconds` of the run, or of `level`."""
        samples = self.samples
        if level is not None:
            start, end = level.span
            samples = [s for s in samples if start <= s.at <= end]
        if not samples:
            return []
        if first:
            return [s for s in samples if s.at <= samples[0].at + seconds]
        return [s for s in samples if s.at >= samples[-1].at - seconds]


@contextmanager
def soak_server(data_dir: Path) -> Iterator[tuple[RunningServer, dict[str, list[str]]]]:
    """An API replica (no trainers) with files and queued jobs to read; the ids to request."""
    env = {
        "FTAPI_API_KEY": ADMIN_KEY,
        "FTAPI_MAX_CONCURRENT_JOBS": "0",
        "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.5",
        "FTAPI_ENGINE": "transformers",
    }
    # A busy machine needs minutes to start a server (and the first chat builds tiny-chat).
    with run_server(data_dir, env, ready_timeout=600) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=ADMIN_KEY, _strict_response_validation=True)
        files = [
            client.files.create(file=(f"t{i}.jsonl", chat_jsonl(12)), purpose="fine-tune").id
            for i in range(5)
        ]
        jobs = [client.fine_tuning.jobs.create(model="tiny-chat", training_file=f).id for f in files[:3]]
        for job in jobs:
            wait_for_status(client, job, {"queued", "failed"}, 60)
        # The first chat builds tiny-chat and loads torch (a minute on a busy machine): not soaked.
        client.with_options(timeout=900).chat.completions.create(**CHAT)  # type: ignore[call-overload]
        yield srv, {"files": files, "jobs": jobs}


def _requests(
    ids: dict[str, list[str]], rng: random.Random
) -> tuple[str, str, str, dict[str, object] | None]:
    """(kind, method, path, json body) of the next request, drawn from the mix."""
    kind = rng.choice(["files", "file", "jobs", "events", "models", "chat"])
    if kind == "files":
        return kind, "GET", "/v1/files", None
    if kind == "file":
        return kind, "GET", f"/v1/files/{rng.choice(ids['files'])}", None
    if kind == "jobs":
        return kind, "GET", "/v1/fine_tuning/jobs?limit=20", None
    if kind == "events":
        return kind, "GET", f"/v1/fine_tuning/jobs/{rng.choice(ids['jobs'])}/events", None
    if kind == "models":
        return kind, "GET", "/v1/models", None
    return kind, "POST", "/v1/chat/completions", CHAT


async def _level(
    server: RunningServer, ids: dict[str, list[str]], level: Level, max_requests: int, seed: int
) -> None:
    rng = random.Random(seed)
    deadline = time.monotonic() + level.seconds
    budget = [max_requests]
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        server.url, connector=connector, headers=headers, timeout=aiohttp.ClientTimeout(total=120)
    ) as http:

        async def user() -> None:
            while time.monotonic() < deadline and budget[0] > 0:
                budget[0] -= 1
                kind, method, path, body = _requests(ids, rng)
                t0 = time.perf_counter()
                try:
                    async with http.request(method, path, json=body) as resp:
                        await resp.read()
                        status = str(resp.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status = type(exc).__name__
                level.latencies_ms.setdefault(kind, []).append((time.perf_counter() - t0) * 1000)
                level.statuses[status] += 1

        await asyncio.gather(*(user() for _ in range(level.concurrency)))


def run_soak(
    server: RunningServer,
    ids: dict[str, list[str]],
    levels: list[tuple[int, float]],
    max_requests: int = 50_000,
    seed: int = 17,
) -> SoakResult:
    """Each (concurrency, seconds) level in turn against `server`, sampling its resources."""
    proc = psutil.Process(server.pid)
    samples: list[Sample] = []
    done = threading.Event()
    started = time.monotonic()

    def snapshot() -> Sample:
        with proc.oneshot():
            return Sample(
                time.monotonic() - started, proc.num_fds(), proc.num_threads(), proc.memory_info().rss / 2**20
            )

    def sample() -> None:
        while not done.is_set():
            samples.append(snapshot())
            done.wait(1.0)

    def resting(label: str, settle_seconds: float = REST_SETTLE_SECONDS) -> None:
        time.sleep(settle_seconds)
        result.at_rest.append((label, snapshot()))

    result = SoakResult([], samples)
    resting("before", settle_seconds=0)  # nothing to settle: no request of ours came yet
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        for i, (concurrency, seconds) in enumerate(levels):
            level = Level(concurrency, seconds)
            begun = time.monotonic() - started
            asyncio.run(_level(server, ids, level, max_requests, seed + i))
            level.span = (begun, time.monotonic() - started)
            result.levels.append(level)
            resting(f"after concurrency {concurrency}")
    finally:
        done.set()
        sampler.join()
    return result


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)
