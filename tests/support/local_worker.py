"""`python -m tests.support.local_worker SPEC.json WORK_DIR`: a stand-in worker process that starts one
trainer exactly as a worker does (api.dispatch.local.LocalExecutor, PR_SET_PDEATHSIG included),
prints the trainer's PID and waits, so that a test can kill it and leave the trainer orphaned."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from api.dispatch.local import LocalExecutor
from trainer.spec import JobSpec


def main(spec_path: Path, work_dir: Path) -> None:
    spec = JobSpec.model_validate_json(spec_path.read_text())
    handle = LocalExecutor(work_dir).start(spec, {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    print(handle.removeprefix("local:"), flush=True)
    while True:  # the test ends this process (SIGKILL); its trainer's output is in trainer.log
        time.sleep(60)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
