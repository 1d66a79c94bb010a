"""FTAPI_VLLM__CPUS: the managed vLLM server runs only on the CPUs it is given.

The spawn path is ManagedVllmServer's own; the command is a stand-in that prints its affinity and the
affinity of a child it starts (vLLM's engine core and worker are such children), so no vLLM is needed.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.process import parse_cpu_list
from serving.vllm import VllmConfig
from serving.vllm_server import ManagedVllmServer, VllmServerConfig

REPORT = (
    "import os, subprocess, sys, time\n"
    "child = subprocess.run([sys.executable, '-c', 'import os; print(sorted(os.sched_getaffinity(0)))'],"
    " capture_output=True, text=True).stdout.strip()\n"
    "print('affinity', sorted(os.sched_getaffinity(0)), child, flush=True)\n"
    "time.sleep(60)\n"
)


@dataclass(frozen=True)
class ReportingConfig(VllmServerConfig):
    def command(self) -> list[str]:
        return [sys.executable, "-c", REPORT]


async def affinity_of_spawned(tmp_path: Path, cpus: frozenset[int] | None) -> str:
    config = ReportingConfig(
        python=Path(sys.executable),
        model_dir=str(tmp_path),
        served_name="x",
        port=1,
        cache_root=tmp_path / "cache",
        log_path=tmp_path / "server.log",
        cpus=cpus,
    )
    server = ManagedVllmServer(config)
    await server.start()
    try:
        for _ in range(200):
            text = config.log_path.read_text() if config.log_path.exists() else ""
            if "affinity" in text:
                return text.split("affinity", 1)[1].strip()
            await asyncio.sleep(0.05)
        raise AssertionError(f"the stand-in never reported: {text!r}")
    finally:
        await server.aclose()


@pytest.mark.asyncio
async def test_the_server_and_its_children_run_only_on_the_cpus_given(tmp_path: Path) -> None:
    first = min(os.sched_getaffinity(0))
    assert await affinity_of_spawned(tmp_path / "pinned", frozenset({first})) == f"[{first}] [{first}]"
    everything = sorted(os.sched_getaffinity(0))
    assert await affinity_of_spawned(tmp_path / "free", None) == f"{everything} {everything}"


def test_cpu_lists_are_parsed_as_taskset_writes_them() -> None:
    available = sorted(os.sched_getaffinity(0))
    assert parse_cpu_list(str(available[0])) == {available[0]}
    assert parse_cpu_list(f"{available[0]}-{available[-1]}") == set(range(available[0], available[-1] + 1))
    for bad in ("", "a", "3-1", "0-", "1,,2"):
        with pytest.raises(ValueError, match="not a CPU list"):
            parse_cpu_list(bad)
    with pytest.raises(ValueError, match="are not available here"):
        parse_cpu_list("4096")


def test_the_setting_is_checked_when_the_config_loads() -> None:
    assert VllmConfig(cpus=str(min(os.sched_getaffinity(0)))).cpus is not None
    with pytest.raises(ValidationError, match="not available here"):
        VllmConfig(cpus="4096")
