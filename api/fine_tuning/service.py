"""Fine-tuning jobs: create (synchronous checks only), list, retrieve, cancel, pause, resume, events.

Data validation is asynchronous, as at OpenAI: the dispatcher moves `validating_files` jobs on.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Principal
from api.catalogue import BaseModelEntry, Catalogue
from api.db.tables import FineTuningJobRow
from api.dispatch.validation import MIN_TRAINING_EXAMPLES
from api.errors import InvalidRequest, NotFound
from api.files.repository import FileRepository
from api.fine_tuning import lifecycle
from api.fine_tuning.estimate import FineTuningJobEstimate, estimate_from_report, measured_throughput
from api.fine_tuning.repository import JobRepository, add_event, transition
from api.fine_tuning.results import job_prefix
from api.fine_tuning.schemas import (
    MAX_SEED,
    DpoHyperparameters,
    DpoMethod,
    Error,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobCheckpointList,
    FineTuningJobCreateParams,
    FineTuningJobEvent,
    FineTuningJobEventList,
    FineTuningJobList,
    Hyperparameters,
    Method,
    Metrics,
    SupervisedMethod,
)
from api.idempotency import write_once
from api.ids import new_id, now_us
from api.integrations import check_integrations, openai_visible
from api.models.resolver import ModelResolver, base_model_id
from api.serving import vllm_base
from api.settings import Settings
from api.trainer_hardware import needs_cuda, trainers_have_cuda
from storage import BlobStore
from trainer.data.validate import StreamingValidator, load_tokenizer

if TYPE_CHECKING:
    from tokenizers import Tokenizer

_SUPERVISED_KEYS = ("batch_size", "learning_rate_multiplier", "n_epochs")


def job_object(row: FineTuningJobRow, organization_id: str) -> FineTuningJob:
    hp = row.resolved_hyperparameters or row.hyperparameters
    if row.method == "dpo":
        method = Method(type="dpo", dpo=DpoMethod(hyperparameters=DpoHyperparameters(**hp)))
    else:
        method = Method(type="supervised", supervised=SupervisedMethod(hyperparameters=Hyperparameters(**hp)))
    return FineTuningJob(
        id=row.id,
        created_at=row.created_at_us // 1_000_000,
        error=Error(**row.error) if row.error else None,  # type: ignore[arg-type]
        fine_tuned_model=row.fine_tuned_model,
        finished_at=row.finished_at,
        # Always an object (strict SDKs require it), DPO jobs included.
        hyperparameters=Hyperparameters(**{k: hp[k] for k in _SUPERVISED_KEYS if k in hp}),
        model=row.model,
        organization_id=organization_id,
        result_files=list(row.result_files),
        seed=row.seed,
        status=row.status,  # type: ignore[arg-type]
        trained_tokens=row.trained_tokens,
        training_file=row.training_file,
        validation_file=row.validation_file,
        estimated_finish=row.estimated_finish,
        integrations=openai_visible(row.integrations),
        metadata=row.job_metadata,
        method=method,
        user_provided_suffix=row.suffix,
    )


def _method_and_hyperparameters(params: FineTuningJobCreateParams) -> tuple[str, dict[str, Any]]:
    if params.method is None:
        hp = params.hyperparameters or Hyperparameters()
        return "supervised", hp.model_dump()
    method = params.method
    if method.type == "reinforcement":
        raise InvalidRequest(
            "Reinforcement fine-tuning is not supported by this server.", param="method.type"
        )
    if method.type == "dpo":
        if params.hyperparameters is not None:
            raise InvalidRequest(
                "The top-level hyperparameters apply to supervised jobs only; "
                "use method.dpo.hyperparameters.",
                param="hyperparameters",
            )
        return "dpo", (method.dpo or DpoMethod()).hyperparameters.model_dump()
    supervised = (method.supervised or SupervisedMethod()).hyperparameters.model_dump()
    if params.hyperparameters is not None:
        top = params.hyperparameters.model_dump()
        if method.supervised is not None and top != supervised:
            raise InvalidRequest(
                "hyperparameters and method.supervised.hyperparameters disagree; send only method.",
                param="hyperparameters",
            )
        supervised = top
    return "supervised", supervised


class JobService:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        catalogue: Catalogue,
        principal: Principal,
        resolver: ModelResolver | None = None,
    ):
        self.session = session
        self.settings = settings
        self.catalogue = catalogue
        self.principal = principal
        self.resolver = resolver
        self.repo = JobRepository(session, principal.project_id)

    def _object(self, row: FineTuningJobRow) -> FineTuningJob:
        return job_object(row, self.settings.organization_id)

    async def _check_file(self, file_id: str | None, param: str) -> None:
        if file_id is None:
            return
        row = await FileRepository(self.session, self.principal.project_id).get(file_id, int(time.time()))
        if row is None or row.purpose != "fine-tune":
            raise InvalidRequest(f"invalid {param}: {file_id}", param=param)

    def _check_servable(self, entry: BaseModelEntry) -> None:
        """Refuse now a LoRA rank the vLLM server cannot load, rather than after hours of training."""
        settings = self.settings
        if settings.engine != "vllm" or entry.mode != "lora":
            return
        if entry.id == vllm_base(settings, self.catalogue).id and entry.lora.r > settings.vllm.max_lora_rank:
            raise InvalidRequest(
                f"Model {entry.id} trains LoRA adapters of rank {entry.lora.r}, but the serving engine "
                f"loads at most rank {settings.vllm.max_lora_rank} (FTAPI_VLLM__MAX_LORA_RANK).",
                param="model",
                code="model_not_available",
            )

    async def _starting_point(self, model: str) -> tuple[BaseModelEntry, str | None]:
        """The catalogue model a job trains and the weights it starts from: a base model's own, or
        a tuned model's (of this project, or shared with it) or checkpoint's, as OpenAI allows."""
        entry = self.catalogue.get(model)
        if entry is not None:
            return entry, None
        found = None
        if model.startswith("ft:") and self.resolver is not None:
            found = await self.resolver.find(self.session, self.principal.project_id, model)
        entry = self.catalogue.get(base_model_id(found[0])) if found is not None else None
        if found is None or entry is None:
            raise InvalidRequest(
                f"Model {model} is not available for fine-tuning or does not exist.",
                param="model",
                code="model_not_available",
            )
        job, checkpoint = found
        weights = checkpoint.storage_prefix if checkpoint else job_prefix(job.project_id, job.id) + "model/"
        return entry, weights

    async def _checked(
        self, params: FineTuningJobCreateParams
    ) -> tuple[BaseModelEntry, str | None, str, dict[str, Any]]:
        """The synchronous checks of a job's body: its model, method, parameters and files."""
        entry, init_weights_prefix = await self._starting_point(params.model)
        method, hyperparameters = _method_and_hyperparameters(params)
        if method not in entry.methods:
            raise InvalidRequest(
                f"Model {params.model} does not support method {method}.", param="method.type"
            )
        self._check_servable(entry)
        if (option := needs_cuda(entry)) is not None and not trainers_have_cuda(self.settings):
            raise InvalidRequest(
                f"Model {entry.id} is configured for {option}, which needs a CUDA GPU, but the trainers "
                f"here have none (executor {self.settings.executor}).",
                param="model",
                code="model_not_available",
            )
        if (problem := self.catalogue.template(entry.id).problem) is not None:
            raise InvalidRequest(
                f"Model {entry.id} cannot be fine-tuned here: {problem}.",
                param="model",
                code="model_not_available",
            )
        await self._check_file(params.training_file, "training_file")
        await self._check_file(params.validation_file, "validation_file")
        return entry, init_weights_prefix, method, hyperparameters

    async def estimate(self, params: FineTuningJobCreateParams, store: BlobStore) -> FineTuningJobEstimate:
        """What the job would do (tokens, steps, resolved `auto` values, duration), with the same
        checks as create and the training file validated as the dispatcher would; nothing is created."""
        entry, _, method, hyperparameters = await self._checked(params)
        file = await FileRepository(self.session, self.principal.project_id).get(
            params.training_file, int(time.time())
        )
        assert file is not None  # checked above
        tokenizer = await self._tokenizer(entry)
        validator = StreamingValidator(
            expected_format="preference" if method == "dpo" else "chat",
            tokenizer=tokenizer,
            max_problems=1,
            min_examples=MIN_TRAINING_EXAMPLES,
        )
        async for chunk in store.open_stream(file.storage_key):
            await asyncio.to_thread(validator.feed, chunk)
        report = await asyncio.to_thread(validator.finish)
        if not report.ok and report.first_problem is not None:
            code = (
                "invalid_n_examples"
                if report.first_problem.code == "invalid_n_examples"
                else "invalid_training_file"
            )
            raise InvalidRequest(report.first_problem.message, param="training_file", code=code)
        return estimate_from_report(
            model=params.model,
            entry=entry,
            method=method,
            requested=hyperparameters,
            report=report,
            throughput=await measured_throughput(self.session, entry.id),
        )

    async def _tokenizer(self, entry: BaseModelEntry) -> Tokenizer | None:
        """The base model's tokenizer when it is on this machine (counts are exact), else None."""
        if self.resolver is None:
            return None
        path = Path(await self.resolver.base_path(entry)) / "tokenizer.json"
        return await asyncio.to_thread(load_tokenizer, path) if path.is_file() else None

    async def create(self, params: FineTuningJobCreateParams, idempotency_key: str | None) -> FineTuningJob:
        if idempotency_key and (existing := await self.repo.by_idempotency_key(idempotency_key)):
            return self._object(existing)
        entry, init_weights_prefix, method, hyperparameters = await self._checked(params)
        integrations = check_integrations(params.integrations, self.settings.wandb, self.settings.mlflow)
        row = FineTuningJobRow(
            id=new_id("ftjob-"),
            project_id=self.principal.project_id,
            model=params.model,
            base_model=entry.id if init_weights_prefix is not None else None,
            init_weights_prefix=init_weights_prefix,
            training_file=params.training_file,
            validation_file=params.validation_file,
            status="validating_files",
            method=method,
            hyperparameters=hyperparameters,
            resolved_hyperparameters=None,
            suffix=params.suffix,
            seed=params.seed if params.seed is not None else secrets.randbelow(MAX_SEED + 1),
            job_metadata=params.metadata,
            integrations=integrations,
            result_files=[],
            created_at_us=now_us(),
            attempts=0,
            idempotency_key=idempotency_key or None,
        )

        async def write() -> None:
            self.session.add(row)
            await self.session.flush()  # the job row first: events reference it
            add_event(self.session, row.id, lifecycle.created(row.id))
            add_event(self.session, row.id, lifecycle.validating(row.training_file, row.validation_file))
            await self.session.commit()

        winner = await write_once(self.session, idempotency_key, write, self.repo.by_idempotency_key)
        return self._object(winner or row)

    async def _row(self, job_id: str) -> FineTuningJobRow:
        row = await self.repo.get(job_id)
        if row is None:
            raise NotFound(f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")
        return row

    async def retrieve(self, job_id: str) -> FineTuningJob:
        return self._object(await self._row(job_id))

    async def list(
        self, *, after: str | None, limit: int, metadata: dict[str, str] | None, status: str | None = None
    ) -> FineTuningJobList:
        rows = list(await self.repo.all_newest_first())
        if after is not None:
            # Found among all jobs, not only the matching ones: a job that changed status since the
            # last page still marks where that page ended.
            ids = [r.id for r in rows]
            if after not in ids:
                raise InvalidRequest(f"No such fine-tuning job: {after}", param="after")
            rows = rows[ids.index(after) + 1 :]
        # Per-project job counts are small; filtering here keeps the JSON query portable.
        if metadata is not None:
            rows = [r for r in rows if all((r.job_metadata or {}).get(k) == v for k, v in metadata.items())]
        if status is not None:
            rows = [r for r in rows if r.status == status]
        return FineTuningJobList(data=[self._object(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def _move(
        self, job_id: str, allowed: frozenset[str], verb: str, message: str, **values: Any
    ) -> FineTuningJob:
        row = await self._row(job_id)
        if not await transition(self.session, job_id, allowed, **values):
            await self.session.refresh(row)
            raise InvalidRequest(f"Cannot {verb} a job that is {row.status}.", param="fine_tuning_job_id")
        add_event(self.session, job_id, message)
        await self.session.commit()
        await self.session.refresh(row)
        return self._object(row)

    async def cancel(self, job_id: str) -> FineTuningJob:
        return await self._move(
            job_id,
            lifecycle.CANCELLABLE,
            "cancel",
            lifecycle.CANCELLED,
            status="cancelled",
            finished_at=int(time.time()),
            estimated_finish=None,
        )

    async def pause(self, job_id: str) -> FineTuningJob:
        return await self._move(job_id, frozenset({"running"}), "pause", lifecycle.PAUSED, status="paused")

    async def resume(self, job_id: str) -> FineTuningJob:
        return await self._move(job_id, frozenset({"paused"}), "resume", lifecycle.RESUMED, status="queued")

    async def events(self, job_id: str, *, after: str | None, limit: int) -> FineTuningJobEventList:
        await self._row(job_id)
        after_seq = None
        if after is not None:
            after_seq = await self.repo.event_seq(job_id, after)
            if after_seq is None:
                raise InvalidRequest(f"No such event: {after}", param="after")
        rows = await self.repo.events(job_id, after_seq=after_seq, limit=limit)
        data = [
            FineTuningJobEvent(
                id=r.id,
                created_at=r.created_at_us // 1_000_000,
                level=r.level,  # type: ignore[arg-type]
                message=r.message,
                data=r.data,
                type=r.type,  # type: ignore[arg-type]
            )
            for r in rows[:limit]
        ]
        return FineTuningJobEventList(data=data, has_more=len(rows) > limit)

    async def checkpoints(self, job_id: str, *, after: str | None, limit: int) -> FineTuningJobCheckpointList:
        await self._row(job_id)
        try:
            rows = await self.repo.checkpoints(job_id, after=after, limit=limit)
        except LookupError:
            raise InvalidRequest(f"No such checkpoint: {after}", param="after") from None
        data = [
            FineTuningJobCheckpoint(
                id=r.id,
                created_at=r.created_at_us // 1_000_000,
                fine_tuned_model_checkpoint=r.fine_tuned_model_checkpoint,
                fine_tuning_job_id=r.job_id,
                metrics=Metrics.model_validate(r.metrics),
                step_number=r.step_number,
            )
            for r in rows[:limit]
        ]
        return FineTuningJobCheckpointList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=len(rows) > limit,
        )
