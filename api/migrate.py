"""`ftapi migrate-from-openai`: recreate an OpenAI-compatible service's fine-tuning jobs here.

For each source job (oldest first): pick the target base model (`--map` patterns, else `--model`),
copy its training and validation files (downloaded from the source, uploaded here), carry over its
method and hyperparameters, suffix, seed and metadata, and create the job here. What cannot be
carried over is reported per job: the source's trained weights (the job is re-run here), its
integrations (configured per deployment here), reinforcement fine-tuning, a file whose content the
source will not hand out (OpenAI refuses downloads of `fine-tune` files), a job with no target
model. Re-running is safe: each created job carries `metadata.migrated_from` and was created with
an Idempotency-Key derived from the source job, so a job migrated before is found, not duplicated.

Both sides are spoken to with the `openai` SDK (`pip install 'ftapi[migrate]'`), imported here only.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

MIGRATED_FROM = "migrated_from"
MAX_METADATA = 16
FINISHED_BADLY = ("failed", "cancelled")


@dataclass
class JobReport:
    source_job: str
    source_model: str
    source_status: str
    outcome: str = "not_mapped"  # created | exists | would_create | skipped | not_mapped
    target_job: str | None = None
    target_model: str | None = None
    mapped: dict[str, Any] = field(default_factory=dict)
    not_mapped: list[str] = field(default_factory=list)


@dataclass
class Plan:
    model: str | None
    mapping: list[tuple[str, str]]  # (fnmatch pattern of the source model, target model), first wins
    include_failed: bool = False
    only: set[str] = field(default_factory=set)
    dry_run: bool = False

    def target_model(self, source_model: str) -> str | None:
        for pattern, target in self.mapping:
            if fnmatch.fnmatchcase(source_model, pattern):
                return target
        return self.model


def parse_mapping(items: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        source, sep, target = item.partition("=")
        if not sep or not source or not target:
            raise ValueError(f"--map takes SOURCE_MODEL_PATTERN=TARGET_MODEL, not {item!r}")
        pairs.append((source, target))
    return pairs


def _method(job: Any) -> tuple[str, dict[str, Any]]:
    """The job's method type and its hyperparameters, from `method` or the legacy top-level field."""
    method = getattr(job, "method", None)
    kind = getattr(method, "type", None) or "supervised"
    detail = getattr(method, kind, None) if method is not None else None
    hp = getattr(detail, "hyperparameters", None) or (job.hyperparameters if kind == "supervised" else None)
    values = hp.model_dump(exclude_none=True) if hp is not None else {}
    return kind, {
        k: v for k, v in values.items() if k in ("n_epochs", "batch_size", "learning_rate_multiplier", "beta")
    }


class Migration:
    def __init__(self, source: Any, target: Any, plan: Plan, source_url: str) -> None:
        self.source = source
        self.target = target
        self.plan = plan
        self.tag = hashlib.sha256(source_url.rstrip("/").encode()).hexdigest()[:10]
        self._files: dict[str, str] = {}  # source file id -> target file id, for this run

    def run(self) -> list[JobReport]:
        # Oldest first: the source lists newest first in its exact order, where `created_at` (whole
        # seconds) ties for jobs created together and ids are random.
        jobs = list(self.source.fine_tuning.jobs.list(limit=100))[::-1]
        return [self.job(j) for j in jobs if not self.plan.only or j.id in self.plan.only]

    def _copy_file(self, file_id: str, what: str, report: JobReport) -> str | None:
        if file_id in self._files:
            return self._files[file_id]
        import openai

        try:
            info = self.source.files.retrieve(file_id)
            content = self.source.files.content(file_id).read()
        except openai.APIStatusError as exc:
            report.not_mapped.append(
                f"{what} {file_id} could not be downloaded from the source: {exc.message}"
            )
            return None
        if self.plan.dry_run:
            return f"(copy of {file_id})"
        try:
            created = self.target.files.create(
                file=(info.filename or f"{file_id}.jsonl", content),
                purpose="fine-tune",
                extra_headers={"Idempotency-Key": f"migrate:{self.tag}:{file_id}"},
            )
        except openai.BadRequestError as exc:
            report.not_mapped.append(f"{what} {file_id} was refused here: {exc.message}")
            return None
        self._files[file_id] = created.id
        report.mapped[what] = f"{file_id} -> {created.id}"
        return str(created.id)

    def job(self, job: Any) -> JobReport:
        import openai

        report = JobReport(job.id, job.model, job.status)
        if job.status in FINISHED_BADLY and not self.plan.include_failed:
            report.outcome = "skipped"
            report.not_mapped.append(f"the job {job.status} at the source (--include-failed copies it)")
            return report
        existing = list(self.target.fine_tuning.jobs.list(metadata={MIGRATED_FROM: job.id}, limit=1))
        if existing:
            report.outcome, report.target_job, report.target_model = (
                "exists",
                existing[0].id,
                existing[0].model,
            )
            return report
        target_model = self.plan.target_model(job.model)
        if target_model is None:
            report.not_mapped.append(f"no target model for {job.model} (--model or --map)")
            return report
        report.target_model = target_model
        kind, hyperparameters = _method(job)
        if kind not in ("supervised", "dpo"):
            report.not_mapped.append(f"method {kind}: no equivalent here")
            return report
        report.mapped |= {"method": kind, "hyperparameters": hyperparameters}
        if job.integrations:
            types = sorted({getattr(i, "type", "?") for i in job.integrations})
            report.not_mapped.append(
                f"integrations ({', '.join(types)}) are not copied: configure them here and on new jobs"
            )
        if job.fine_tuned_model:
            report.not_mapped.append(
                f"the source's weights ({job.fine_tuned_model}) stay there: the job trains anew"
            )
        training = self._copy_file(job.training_file, "training_file", report)
        validation = (
            self._copy_file(job.validation_file, "validation_file", report) if job.validation_file else None
        )
        if training is None or (job.validation_file and validation is None):
            return report
        metadata = dict(job.metadata or {})
        if len(metadata) < MAX_METADATA:
            metadata[MIGRATED_FROM] = job.id
        else:  # the Idempotency-Key still prevents a second copy
            report.not_mapped.append(f"metadata is full: {MIGRATED_FROM} was not added")
        params: dict[str, Any] = {
            "model": target_model,
            "training_file": training,
            "method": {"type": kind, kind: {"hyperparameters": hyperparameters}},
            "metadata": metadata,
        }
        if validation:
            params["validation_file"] = validation
        suffix = getattr(job, "user_provided_suffix", None)
        if suffix:
            params["suffix"] = report.mapped["suffix"] = suffix
        if job.seed is not None:
            params["seed"] = report.mapped["seed"] = job.seed
        if self.plan.dry_run:
            report.outcome = "would_create"
            return report
        try:
            created = self.target.fine_tuning.jobs.create(
                **params, extra_headers={"Idempotency-Key": f"migrate:{self.tag}:{job.id}"}
            )
        except openai.BadRequestError as exc:
            report.not_mapped.append(f"refused here: {exc.message}")
            return report
        report.outcome, report.target_job = "created", created.id
        return report


def summary(reports: list[JobReport]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in reports:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    return {"jobs": [asdict(r) for r in reports], "counts": counts}


def format_text(reports: list[JobReport]) -> str:
    lines = []
    for r in reports:
        where = f" -> {r.target_job or '(new job)'} on {r.target_model}" if r.target_model else ""
        lines.append(f"{r.source_job} ({r.source_model}, {r.source_status}){where}: {r.outcome}")
        for key, value in r.mapped.items():
            lines.append(f"    mapped {key}: {value}")
        for reason in r.not_mapped:
            lines.append(f"    not mapped: {reason}")
    counts = summary(reports)["counts"]
    lines.append(
        ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no jobs at the source"
    )
    return "\n".join(lines)
