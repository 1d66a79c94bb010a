"""Prometheus `/metrics`: HTTP traffic observed by the request middleware, job state read from the
database at scrape time (so every replica reports the same job figures, whoever ran the jobs)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.db.tables import FineTuningJobRow

JOB_STATUSES = ("validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled")
# Chat and trainer-report latencies span milliseconds to minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

router = APIRouter(include_in_schema=False)


class _JobFigures(Collector):
    """The last figures read from the database, exposed with their proper types."""

    def __init__(self) -> None:
        self.by_status: dict[str, int] = {}
        self.trained_tokens = 0
        self.engines: dict[str, bool] = {}

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("ftapi_fine_tuning_jobs", "Fine-tuning jobs by status.", labels=["status"])
        for status in JOB_STATUSES:
            jobs.add_metric([status], self.by_status.get(status, 0))
        yield jobs
        yield GaugeMetricFamily(
            "ftapi_fine_tuning_queue_depth",
            "Jobs waiting for a trainer.",
            value=self.by_status.get("queued", 0),
        )
        yield CounterMetricFamily(
            "ftapi_trained_tokens", "Tokens trained by succeeded jobs.", value=self.trained_tokens
        )
        engines = GaugeMetricFamily("ftapi_engine_up", "Whether a serving engine answers.", labels=["engine"])
        for name, up in self.engines.items():
            engines.add_metric([name], 1 if up else 0)
        yield engines


class Metrics:
    """One registry per app (tests run several apps in a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ftapi_http_requests",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ftapi_http_request_duration_seconds",
            "Time to the end of the response (streams included), by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.jobs = _JobFigures()
        self.registry.register(self.jobs)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    async def refresh(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions() as session:
            rows = await session.execute(
                select(FineTuningJobRow.status, func.count()).group_by(FineTuningJobRow.status)
            )
            self.jobs.by_status = {status: count for status, count in rows.tuples()}
            tokens = await session.scalar(
                select(func.coalesce(func.sum(FineTuningJobRow.trained_tokens), 0)).where(
                    FineTuningJobRow.status == "succeeded"
                )
            )
            self.jobs.trained_tokens = int(tokens or 0)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text format; no auth, like /health (expose it to the scraper only)."""
    state = request.app.state
    collected: Metrics = state.metrics
    await collected.refresh(state.sessions)
    collected.jobs.engines = await state.serving.ready()
    return Response(generate_latest(collected.registry), media_type=CONTENT_TYPE_LATEST)
