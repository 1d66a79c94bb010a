"""Job start overhead through a real `ftapi serve`: the timing both bench.train (local executor) and
bench.docker_start (Docker next to local) report.

Seconds are counted from `jobs.create` returning, polled every 50 ms: queued (files validated),
running (dispatched: the subprocess or container started), trainer up (its "Fine-tuning job started"
event: process or container start, imports, data download, model load) and the first metrics event
(step 10), for a 1-epoch tiny-chat LoRA job."""

from __future__ import annotations

import time
from pathlib import Path

MARKS = ("queued", "running", "trainer_up", "first_metrics")


def link_models(data: Path, model_cache: Path) -> None:
    """Give a server's data dir the already built models, so model build time is not measured."""
    (data / "models").mkdir(parents=True)
    for item in model_cache.iterdir():
        (data / "models" / item.name).symlink_to(item)


def time_job_start(data: Path, env: dict[str, str], finish: bool = False) -> dict[str, float]:
    """Start a server on `data` with `env`, create one job, return the seconds to each of MARKS.
    With `finish`, wait (up to 2 min) for the job to end, so a next measurement starts on a quiet
    machine."""
    import openai

    from tests.conftest import ADMIN_KEY
    from tests.support.sentiment import sentiment_sets, to_jsonl
    from tests.support.server import run_server

    marks: dict[str, float] = {}
    server_env = {"FTAPI_API_KEY": ADMIN_KEY, "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.2", **env}
    with run_server(data, server_env) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=ADMIN_KEY)
        fid = client.files.create(file=("s.jsonl", to_jsonl(sentiment_sets()[0])), purpose="fine-tune").id
        t0 = time.perf_counter()
        job = client.fine_tuning.jobs.create(
            model="tiny-chat",
            training_file=fid,
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
        )
        while "first_metrics" not in marks:
            status = client.fine_tuning.jobs.retrieve(job.id)
            now = time.perf_counter() - t0
            if status.status in ("queued", "running", "succeeded"):
                marks.setdefault("queued", now)
            if status.status in ("running", "succeeded"):
                marks.setdefault("running", now)
            events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
            if any(e.message == "Fine-tuning job started" for e in events):
                marks.setdefault("trainer_up", now)
            if any(e.type == "metrics" for e in events):
                marks.setdefault("first_metrics", now)
            if status.status in ("failed", "cancelled") or now > 300:
                raise SystemExit(f"the job ended {status.status} before training: {status.error}")
            time.sleep(0.05)
        deadline = time.monotonic() + 120
        while finish and time.monotonic() < deadline:
            if client.fine_tuning.jobs.retrieve(job.id).status != "running":
                break
            time.sleep(0.2)
    return marks
