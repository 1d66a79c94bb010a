"""The one settings object. Built by the CLI (or a test) and passed down; never imported as a global."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.dispatch.docker import DockerConfig
from api.dispatch.executor import TRAINER_IMAGE
from api.dispatch.kubernetes import KubernetesConfig
from api.integrations import MlflowConfig, WandbConfig
from serving.vllm import VllmConfig
from storage.config import LocalStoreConfig, S3StoreConfig

MB = 1024 * 1024


class Settings(BaseSettings):
    """Every knob of the API process. Environment: `FTAPI_<NAME>`, nested with `__` (`FTAPI_S3__BUCKET`)."""

    model_config = SettingsConfigDict(env_prefix="FTAPI_", env_nested_delimiter="__", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Field(default=Path("data"), description="SQLite database and local blobs live here.")
    database_url: str | None = Field(
        default=None, description="sqlite:///path or postgresql://user@host/db; default: SQLite in data_dir."
    )
    auto_migrate: bool = Field(default=True, description="Apply Alembic migrations when the service starts.")

    storage_backend: Literal["local", "s3"] = "local"
    local_storage_root: Path | None = Field(default=None, description="Default: <data_dir>/blobs.")
    s3: S3StoreConfig | None = None

    api_key: SecretStr | None = Field(default=None, description="A key valid for the default project.")
    organization_id: str = "org-ftapi"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "info"

    max_file_bytes: int = 512 * MB
    max_upload_part_bytes: int = 64 * MB
    max_upload_bytes: int = 8 * 1024 * MB
    upload_ttl_seconds: int = 3600
    max_jsonl_line_bytes: int = 16 * MB
    sweep_interval_seconds: float = 60.0

    models_file: Path | None = Field(default=None, description="Base-model catalogue (JSON/YAML).")
    catalogue_refresh_seconds: float = Field(
        default=30.0, gt=0, description="How often models imported into storage are looked up again."
    )
    dispatch_interval_seconds: float = 1.0
    max_concurrent_jobs: int = Field(
        default=1, ge=0, description="Trainers this process runs at once; 0 for an API-only replica."
    )
    executor: Literal["local", "docker", "kubernetes"] = Field(
        default="local",
        description="Where trainers run: subprocesses here, containers on this machine, or Kubernetes Jobs.",
    )
    trainer_image: str = Field(
        default=TRAINER_IMAGE,
        description="The trainer image of the docker and kubernetes executors (`make images` builds this "
        "tag); FTAPI_DOCKER__IMAGE or FTAPI_KUBERNETES__IMAGE overrides it for one executor.",
    )
    docker: DockerConfig | None = Field(default=None, description="FTAPI_DOCKER__NETWORK, ...")
    kubernetes: KubernetesConfig | None = Field(default=None, description="FTAPI_KUBERNETES__NAMESPACE, ...")
    trainer_processes: int | None = Field(
        default=None,
        ge=0,
        description="Trainer processes per job (DDP via torchrun): default one per GPU of FTAPI_DOCKER__GPUS "
        "or FTAPI_KUBERNETES__GPUS, else 1. Set it for the local executor (2 on a CPU runs gloo).",
    )
    cancel_grace_seconds: float = Field(
        default=30.0, description="Time a stopped trainer (cancel, pause) gets to save a checkpoint and exit."
    )
    run_lease_seconds: int = Field(default=60, ge=2, description="A worker silent this long loses its runs.")
    max_job_attempts: int = Field(default=3, ge=1, description="Starts of a job before it fails for good.")
    engine: Literal["transformers", "vllm"] = Field(
        default="transformers",
        description="Chat engine: in-process transformers (works anywhere) or a vLLM server (FTAPI_VLLM__*).",
    )
    max_loaded_adapters: int = Field(default=4, ge=1, description="Adapters the transformers engine keeps.")
    vllm: VllmConfig = Field(default_factory=VllmConfig)
    wandb: WandbConfig = Field(
        default_factory=WandbConfig, description="W&B for jobs' wandb integration: FTAPI_WANDB__BASE_URL, ..."
    )
    mlflow: MlflowConfig = Field(
        default_factory=MlflowConfig, description="MLflow for the mlflow integration: FTAPI_MLFLOW__*"
    )
    webhook_retry_seconds: list[float] = Field(
        default=[5, 300, 1800, 7200, 18000, 36000, 36000],
        description="Waits before each retry of a webhook delivery (Standard Webhooks' schedule); "
        "after the last one the delivery has failed.",
    )
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, description="Time limit of one attempt.")
    webhook_poll_seconds: float = Field(default=1.0, gt=0, description="How often to look for due ones.")
    internal_url: str | None = Field(
        default=None, description="How trainers reach this API; default from host/port."
    )

    @property
    def resolved_internal_url(self) -> str:
        if self.internal_url:
            return self.internal_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @model_validator(mode="after")
    def _s3_needs_config(self) -> Settings:
        if self.storage_backend == "s3" and self.s3 is None:
            raise ValueError("storage_backend=s3 needs FTAPI_S3__BUCKET (and endpoint/credentials)")
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'ftapi.db').resolve()}"

    @property
    def store_config(self) -> LocalStoreConfig | S3StoreConfig:
        if self.storage_backend == "s3":
            assert self.s3 is not None
            return self.s3
        return LocalStoreConfig(root=(self.local_storage_root or self.data_dir / "blobs").resolve())
