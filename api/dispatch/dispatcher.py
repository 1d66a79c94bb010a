"""The dispatcher: claims jobs with a lease and moves them on. Runs in `ftapi serve` (and, with the
executor slice, alone as `ftapi worker`). Safe with several processes: every claim is a
compare-and-set, and a dead process's lease simply expires.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.catalogue import Catalogue
from api.dispatch.executor import Executor, ExecutorUnavailable, ReadinessCheck
from api.dispatch.runs import recover_orphans, start_run, watch_runs
from api.dispatch.validation import validate_job
from api.fine_tuning.repository import claim
from api.settings import Settings
from storage import BlobStore

log = structlog.get_logger()


class Dispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: BlobStore,
        catalogue: Catalogue,
        settings: Settings,
        executor: Executor,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.catalogue = catalogue
        self.settings = settings
        self.executor = executor
        self.interval = settings.dispatch_interval_seconds
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._executor_down: str | None = None  # why the executor cannot start runs, while it cannot

    async def step(self) -> bool:
        """Do one unit of work; returns whether there was any."""
        async with self.sessions() as session:
            now = int(time.time())
            active = await watch_runs(session, self.settings, self.executor, self.worker_id, self.store)
            await recover_orphans(session, self.settings, now, self.executor, self.worker_id, self.store)
            lease = self.settings.run_lease_seconds  # renewed while the files are read
            job = await claim(session, "validating_files", self.worker_id, lease, now)
            if job is not None:
                try:
                    await validate_job(session, self.store, self.catalogue, job, lease)
                except Exception:
                    # The lease runs out and another attempt is made; the log says why this one failed.
                    log.exception("job.validation_error", job_id=job.id)
                return True
            if active >= self.settings.max_concurrent_jobs:
                return False  # queued jobs wait for a free slot
            if not await self.executor_ready():
                return False  # queued jobs wait for the executor (the log said why)
            # A worker that dies between this claim and the start holds the job for one lease only.
            job = await claim(session, "queued", self.worker_id, self.settings.run_lease_seconds, now)
            if job is None:
                return False
            await start_run(session, self.settings, self.catalogue, self.executor, job, self.worker_id)
            return True

    async def executor_ready(self) -> bool:
        """Whether the executor can start runs now; logs when that changes, with the reason."""
        if not isinstance(self.executor, ReadinessCheck):
            return True
        try:
            await asyncio.to_thread(self.executor.ready)
        except ExecutorUnavailable as exc:
            if self._executor_down != str(exc):
                log.error("executor.unavailable", reason=str(exc), queued_jobs="waiting")
            self._executor_down = str(exc)
            return False
        if self._executor_down is not None:
            log.info("executor.available")
        self._executor_down = None
        return True

    async def run(self) -> None:
        while True:
            try:
                busy = await self.step()
            except Exception:
                log.exception("dispatcher.failed")
                busy = False
            if not busy:
                await asyncio.sleep(self.interval)
