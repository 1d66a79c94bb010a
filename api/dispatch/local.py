"""LocalExecutor: the trainer as a subprocess of this worker (the laptop and single-machine case)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from api.dispatch.executor import RunStatus
from serving.process import die_with_parent
from trainer.spec import JobSpec


class LocalExecutor:
    # Started from the event loop's thread, never a pool thread: PR_SET_PDEATHSIG (die_with_parent)
    # signals the child when the thread that forked it ends.
    start_on_loop = True

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self._runs: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping: set[str] = set()

    def start(self, spec: JobSpec, env: dict[str, str]) -> str:
        run_dir = self.work_dir / spec.job_id
        run_dir.mkdir(parents=True, exist_ok=True)
        spec_path = run_dir / "spec.json"
        spec_path.write_text(spec.model_dump_json())
        with open(run_dir / "trainer.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "trainer", "run", "--spec", str(spec_path)],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: signals reach its children too
                preexec_fn=die_with_parent,
            )
        handle = f"local:{proc.pid}"
        self._runs[handle] = proc
        return handle

    def poll(self, handle: str) -> RunStatus:
        proc = self._runs.get(handle)
        if proc is None:
            return RunStatus("lost", detail="the worker that started this run is gone")
        code = proc.poll()
        if code is None:
            return RunStatus("running")
        self._runs.pop(handle, None)
        self._stopping.discard(handle)
        return RunStatus("exited", exit_code=code)

    def cancel(self, handle: str, grace_seconds: float) -> None:
        proc = self._runs.get(handle)
        if proc is None or proc.poll() is not None or handle in self._stopping:
            return  # asked once: the trainer is saving its checkpoint, the timer below is running
        self._stopping.add(handle)
        os.killpg(proc.pid, signal.SIGTERM)

        def force() -> None:
            try:
                proc.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

        threading.Thread(target=force, daemon=True).start()
