"""Workers under fire: many small jobs on PostgreSQL, API replicas, `ftapi worker` processes, and a
seeded, bounded chaos loop that kill -9s random workers (a replacement starts on the same data dir,
as a supervisor would restart it) and random trainers. Used by a short test and by bench/chaos.py.

While it runs, the trainer processes are sampled from /proc (a local trainer is
`python -m trainer run --spec <worker data>/runs/<job id>/spec.json`): no job may ever have two live
trainers. At the end every job is checked through the API and its database row: succeeded exactly
once with exactly one model, attempts agreeing with the requeue events and the kills that hit it,
and each resumed attempt continuing the step count from its checkpoint.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import openai

from tests.conftest import ADMIN_KEY
from tests.support.data import chat_jsonl
from tests.support.jobs import wait_for_status
from tests.support.moto_server import stop
from tests.support.postgres import temporary_database
from tests.support.server import RunningServer, run_server

FINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class ChaosConfig:
    jobs: int = 8
    workers: int = 2
    replicas: int = 2
    kills: int = 4  # the chaos loop stops after this many kill -9s
    seed: int = 17
    epochs: int = 3  # a checkpoint per epoch
    examples: int = 12
    batch_size: int = 4  # 3 steps an epoch: the trainer's start-up, not training, dominates
    pause: tuple[float, float] = (2.0, 6.0)  # seconds between kills, drawn uniformly
    lease_seconds: int = 5
    timeout: float = 900


@dataclass
class Kill:
    at: float
    kind: str  # "worker" | "trainer"
    pid: int
    jobs: list[str]  # the jobs whose trainer died by it


@dataclass
class JobFacts:
    status: str
    attempts: int  # starts of a trainer, as the database counts them
    requeues: int  # "queued again" events
    kills_hit: int  # kill -9s that hit a live trainer of this job (directly or through its worker)
    resumes: int  # attempts that resumed from a checkpoint
    max_live_trainers: int = 0


@dataclass
class ChaosResult:
    seconds: float
    kills: list[Kill]
    jobs: dict[str, JobFacts]
    max_live_trainers: dict[str, int]
    problems: list[str] = field(default_factory=list)


def live_trainers(root: Path) -> dict[int, str]:
    """pid -> job id of every live (not zombie) local trainer whose spec lies under `root`."""
    found: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state == "Z" or b"trainer" not in args or b"--spec" not in args:
            continue
        spec = Path(args[args.index(b"--spec") + 1].decode())
        if spec.is_relative_to(root):
            found[int(proc.name)] = spec.parent.name
    return found


class Workers:
    """`ftapi worker` processes on fixed data dirs; a killed one is replaced on the same dir."""

    def __init__(self, replicas: list[RunningServer], root: Path, count: int, env: dict[str, str]) -> None:
        self.replicas, self.root, self.env = replicas, root, env
        self.procs: list[subprocess.Popen[bytes]] = [self._start(i) for i in range(count)]

    def data_dir(self, i: int) -> Path:
        return self.root / f"worker{i}"

    def _start(self, i: int) -> subprocess.Popen[bytes]:
        data = self.data_dir(i)
        (data / "runs").mkdir(parents=True, exist_ok=True)
        api = self.replicas[i % len(self.replicas)]  # trainers report to either replica
        env = {**os.environ, **api.env, **self.env, "FTAPI_INTERNAL_URL": api.url}
        with open(data / "worker.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "api.cli", "worker", "--data-dir", str(data)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self, i: int) -> int:
        proc = self.procs[i]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return proc.pid

    def restart(self, i: int) -> None:
        self.procs[i] = self._start(i)

    def close(self) -> None:
        for proc in self.procs:
            stop(proc)


def _db_facts(url: str, job_ids: list[str]) -> dict[str, tuple[int, str | None]]:
    """job id -> (attempts, fine_tuned_model) from the database (attempts are not on the wire)."""
    from sqlalchemy import select

    from api.db.session import create_engine, session_factory
    from api.db.tables import FineTuningJobRow

    async def run() -> dict[str, tuple[int, str | None]]:
        engine = create_engine(url)
        try:
            async with session_factory(engine)() as session:
                rows = await session.execute(
                    select(
                        FineTuningJobRow.id, FineTuningJobRow.attempts, FineTuningJobRow.fine_tuned_model
                    ).where(FineTuningJobRow.id.in_(job_ids))
                )
                return {r[0]: (r[1], r[2]) for r in rows}
        finally:
            await engine.dispose()

    return asyncio.run(run())


def check_job(
    client: openai.OpenAI, job_id: str, attempts: int, kills_hit: int, models: list[str], total_steps: int
) -> tuple[JobFacts, list[str]]:
    """The facts of one finished job and what is wrong with it."""
    problems: list[str] = []
    job = client.fine_tuning.jobs.retrieve(job_id)
    messages = [e.message for e in reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=100)))]
    requeues = sum("the job is queued again (attempt" in m for m in messages)
    resumes = [i for i, m in enumerate(messages) if m.startswith("Fine-tuning job resumed from the ")]
    created = sum(m.startswith("New fine-tuned model created") for m in messages)
    facts = JobFacts(job.status, attempts, requeues, kills_hit, len(resumes))
    if job.status != "succeeded" or not job.fine_tuned_model:
        problems.append(f"{job_id}: {job.status} {job.error}")
    if created != 1 or messages.count("The job has successfully completed") != 1:
        problems.append(f"{job_id}: {created} 'model created' events")
    if messages[-1] != "The job has successfully completed":
        problems.append(f"{job_id}: written to after it succeeded: {messages[-3:]}")
    if models.count(job.fine_tuned_model or "") != 1:
        problems.append(f"{job_id}: its model is listed {models.count(job.fine_tuned_model or '')} times")
    # Every start is counted once: one per requeue plus the first, and a requeue needs a kill.
    if attempts != requeues + 1:
        problems.append(f"{job_id}: {attempts} attempts but {requeues} requeues")
    if requeues > kills_hit:
        problems.append(f"{job_id}: {requeues} requeues but only {kills_hit} kills hit it")
    # A trainer killed before its first checkpoint starts over (it says "started" again).
    starts = messages.count("Fine-tuning job started")
    if starts < 1 or starts + len(resumes) > attempts:
        problems.append(f"{job_id}: {starts} starts and {len(resumes)} resumes in {attempts} attempts")
    # A resumed attempt continues after its checkpoint: its steps and checkpoints are all later.
    for at in resumes:
        step = int(messages[at].rsplit(" ", 1)[1])
        later = []
        for m in messages[at + 1 :]:
            if m.startswith("Fine-tuning job resumed") or "queued again" in m:
                break
            if m.startswith("Step "):
                later.append(int(m.split()[1].split("/")[0]))
            elif m.startswith("Checkpoint created at step "):
                later.append(int(m.split()[4]))
        if any(s <= step for s in later):
            problems.append(f"{job_id}: resumed at step {step} but then reported steps {later}")
    saved = [int(m.split()[4]) for m in messages if m.startswith("Checkpoint created at step ")]
    if not saved or saved[-1] != total_steps:
        problems.append(f"{job_id}: its checkpoints {saved} do not end at step {total_steps}")
    return facts, problems


def run_chaos(work: Path, cfg: ChaosConfig, log: bool = False) -> ChaosResult:
    rng = random.Random(cfg.seed)
    models_dir = work / "models"  # one tiny-chat build shared by every process
    models_dir.mkdir(parents=True, exist_ok=True)
    with temporary_database() as url, ExitStack() as stack:
        env = {
            "FTAPI_API_KEY": ADMIN_KEY,
            "FTAPI_DATABASE_URL": url,
            "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.2",
            "FTAPI_MAX_CONCURRENT_JOBS": "0",
            "FTAPI_LOCAL_STORAGE_ROOT": str(work / "blobs"),  # at scale: one S3 bucket
            "FTAPI_RUN_LEASE_SECONDS": str(cfg.lease_seconds),
            "FTAPI_MAX_JOB_ATTEMPTS": str(cfg.kills + 2),  # the chaos alone never exhausts a job
        }
        replicas = []
        for r in range(cfg.replicas):
            data = work / f"api{r}"
            data.mkdir(parents=True)
            (data / "models").symlink_to(models_dir)
            replicas.append(stack.enter_context(run_server(data, env)))
        for w in range(cfg.workers):
            (work / f"worker{w}").mkdir(parents=True)
            (work / f"worker{w}" / "models").symlink_to(models_dir)
        clients = [
            openai.OpenAI(base_url=s.base_url, api_key=ADMIN_KEY, _strict_response_validation=True)
            for s in replicas
        ]
        fid = clients[0].files.create(file=("s.jsonl", chat_jsonl(cfg.examples)), purpose="fine-tune").id
        hyperparameters = {"n_epochs": cfg.epochs, "batch_size": cfg.batch_size}
        method = {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}}
        total_steps = cfg.epochs * -(-cfg.examples // cfg.batch_size)
        job_ids = [
            clients[i % len(clients)]
            .fine_tuning.jobs.create(model="tiny-chat", training_file=fid, method=method, seed=i)  # type: ignore[arg-type]
            .id
            for i in range(cfg.jobs)
        ]
        # The replicas validate the files; workers start once all jobs are queued (a worker killed
        # while validating holds its job for the validation lease: a delay, not a loss).
        for job_id in job_ids:
            queued = wait_for_status(clients[0], job_id, {"queued", "failed"}, 120)
            assert queued.status == "queued", queued.error
        started = time.monotonic()
        workers = Workers(replicas, work, cfg.workers, {"FTAPI_MAX_CONCURRENT_JOBS": "1"})
        stack.callback(workers.close)

        max_live: dict[str, int] = defaultdict(int)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                per_job: dict[str, int] = defaultdict(int)
                for job_id in live_trainers(work).values():
                    per_job[job_id] += 1
                for job_id, n in per_job.items():
                    max_live[job_id] = max(max_live[job_id], n)
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        kills: list[Kill] = []
        next_kill = time.monotonic() + rng.uniform(*cfg.pause)
        deadline = started + cfg.timeout
        while time.monotonic() < deadline:
            statuses = [clients[0].fine_tuning.jobs.retrieve(j).status for j in job_ids]
            if all(s in FINAL for s in statuses):
                break
            if log:
                print(f"  t={time.monotonic() - started:6.1f}s {dict(Counter(statuses))}", flush=True)
            trainers = live_trainers(work) if len(kills) < cfg.kills else {}
            # Only while something trains: a kill of an idle worker tests nothing.
            if trainers and time.monotonic() >= next_kill:
                if rng.random() < 0.5:
                    pid = rng.choice(sorted(trainers))
                    os.kill(pid, signal.SIGKILL)
                    kills.append(Kill(time.monotonic() - started, "trainer", pid, [trainers[pid]]))
                else:  # the worker of a random live trainer, and with it that trainer
                    parent = _parent(rng.choice(sorted(trainers)))
                    i = next((n for n, p in enumerate(workers.procs) if p.pid == parent), None)
                    if i is not None:
                        mine = [j for p, j in trainers.items() if _parent(p) == parent]
                        pid = workers.kill(i)
                        kills.append(Kill(time.monotonic() - started, "worker", pid, mine))
                        time.sleep(rng.uniform(0.5, 2.0))  # a supervisor's restart delay
                        workers.restart(i)
                if log and kills:
                    k = kills[-1]
                    print(f"  t={k.at:6.1f}s kill -9 {k.kind} {k.pid} (trainers of {k.jobs})", flush=True)
                next_kill = time.monotonic() + rng.uniform(*cfg.pause)
            time.sleep(0.3)
        seconds = time.monotonic() - started
        time.sleep(2)  # anything written after the end would show now
        done.set()
        sampler.join()

        models = [m.id for m in clients[1 % len(clients)].models.list()]
        db = _db_facts(url, job_ids)
        hit: dict[str, int] = defaultdict(int)
        for k in kills:
            for job_id in k.jobs:
                hit[job_id] += 1
        result = ChaosResult(seconds, kills, {}, dict(max_live))
        for job_id in job_ids:
            attempts, _ = db[job_id]
            facts, problems = check_job(
                clients[1 % len(clients)], job_id, attempts, hit[job_id], models, total_steps
            )
            facts.max_live_trainers = max_live.get(job_id, 0)
            if max_live.get(job_id, 0) > 1:
                problems.append(f"{job_id}: {max_live[job_id]} live trainers at once")
            result.jobs[job_id] = facts
            result.problems += problems
        return result


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1
