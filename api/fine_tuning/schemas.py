"""Wire types of /v1/fine_tuning/jobs, named and shaped as in openai-python."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

Auto = Literal["auto"]
JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled", "paused"]
MAX_SEED = 2_147_483_647
# OpenAI's rule; it also keeps `ft:{model}:{project}:{suffix}:{id}` names parseable (no ':').
_SUFFIX = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _auto_or_int(value: Any, name: str, low: int, high: int) -> Any:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
        return value
    raise ValueError(f"{name} must be 'auto' or an integer from {low} to {high}")


def _auto_or_float(value: Any, name: str, high: float | None = None) -> Any:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    if value == "auto" or (ok and (high is None or value <= high)):
        return value
    bound = f" and at most {high}" if high is not None else ""
    raise ValueError(f"{name} must be 'auto' or a number greater than 0{bound}")


class Hyperparameters(BaseModel):
    """Each value is "auto" or a number; "auto" is echoed at creation and resolved during validation."""

    batch_size: Any = "auto"
    learning_rate_multiplier: Any = "auto"
    n_epochs: Any = "auto"

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, v: Any) -> Any:
        return _auto_or_int(v, "batch_size", 1, 256)

    @field_validator("n_epochs")
    @classmethod
    def _epochs(cls, v: Any) -> Any:
        return _auto_or_int(v, "n_epochs", 1, 50)

    @field_validator("learning_rate_multiplier")
    @classmethod
    def _lr(cls, v: Any) -> Any:
        return _auto_or_float(v, "learning_rate_multiplier")


class DpoHyperparameters(Hyperparameters):
    beta: Any = "auto"

    @field_validator("beta")
    @classmethod
    def _beta(cls, v: Any) -> Any:
        return _auto_or_float(v, "beta", 2.0)


class SupervisedMethod(BaseModel):
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)


class DpoMethod(BaseModel):
    hyperparameters: DpoHyperparameters = Field(default_factory=DpoHyperparameters)


class Method(BaseModel):
    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: SupervisedMethod | None = None
    dpo: DpoMethod | None = None
    reinforcement: dict[str, Any] | None = None


class FineTuningJobCreateParams(BaseModel):
    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    hyperparameters: Hyperparameters | None = None  # deprecated top-level form (supervised only)
    method: Method | None = None
    suffix: str | None = Field(default=None, min_length=1, max_length=64)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    metadata: dict[str, str] | None = None
    integrations: list[dict[str, Any]] | None = None

    @field_validator("suffix", mode="before")
    @classmethod
    def _suffix(cls, v: Any) -> Any:
        if isinstance(v, str) and not _SUFFIX.fullmatch(v):
            raise ValueError("suffix must be 1 to 64 letters, digits, '-' or '_'")
        return v

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is None:
            return v
        if len(v) > 16:
            raise ValueError("metadata can have at most 16 pairs")
        for key, value in v.items():
            if len(key) > 64 or len(value) > 512:
                raise ValueError("metadata keys are at most 64 characters and values at most 512")
        return v


class Error(BaseModel):
    code: str
    message: str
    param: str | None = None


class FineTuningJob(BaseModel):
    id: str
    created_at: int
    error: Error | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: Hyperparameters
    model: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    organization_id: str
    result_files: list[str]
    seed: int
    status: JobStatus
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    estimated_finish: int | None = None
    integrations: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None
    method: Method
    user_provided_suffix: str | None = None


class FineTuningJobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJob]
    has_more: bool


class FineTuningJobEvent(BaseModel):
    id: str
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    data: dict[str, Any] | None = None
    type: Literal["message", "metrics"] = "message"


class FineTuningJobEventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJobEvent]
    has_more: bool


class Metrics(BaseModel):
    """A checkpoint's metrics at its step; every key is optional, as in the SDK."""

    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None
    step: float | None = None
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None


class FineTuningJobCheckpoint(BaseModel):
    id: str
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: Metrics
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    step_number: int


class FineTuningJobCheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJobCheckpoint]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool
