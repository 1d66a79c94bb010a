"""JobSpec: everything a trainer run needs, in one JSON file. Torch-free: api/ writes it.

The trainer has no settings of its own: `python -m trainer run --spec SPEC.json` reads this,
takes its data from storage, and writes its outputs back under `output_prefix`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from storage.config import LocalStoreConfig, S3StoreConfig

DEFAULT_STOP_GRACE_SECONDS = 20.0  # a third of the API's default run lease (build_spec passes its own)


class LoraSettings(BaseModel):
    r: int = Field(default=16, ge=1, le=256)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class TrainingOptions(BaseModel):
    """How a base model trains on the hardware (trainer/hardware.py decides what is unset)."""

    gradient_checkpointing: bool | None = Field(
        default=None, description="None: on for models of 1B parameters and more"
    )
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = Field(
        default=None,
        description="None: flash_attention_2 on CUDA with flash_attn installed, else transformers' default",
    )
    padding_free: bool | None = Field(default=None, description="None: on CUDA with FlashAttention 2")
    quantization: Literal["4bit"] | None = Field(default=None, description="4bit: QLoRA (CUDA, bitsandbytes)")


class Hyperparameters(BaseModel):
    """Resolved numbers: `auto` never reaches the trainer."""

    n_epochs: int = Field(ge=1, le=50)
    batch_size: int = Field(ge=1, le=256)
    learning_rate: float = Field(gt=0)
    beta: float | None = Field(default=None, gt=0, le=2)  # DPO only


class BaseModelRef(BaseModel):
    id: str  # the catalogue id, e.g. "tiny-chat" or "Qwen/Qwen2.5-0.5B-Instruct"
    source: str  # "builtin:tiny-chat", a local directory, or a Hugging Face repo id
    max_length: int = Field(default=512, ge=16)


class CheckpointRef(BaseModel):
    step: int = Field(ge=1)
    storage_prefix: str  # everything the Trainer saved for this step (weights, optimizer, RNG state)


class WandbIntegration(BaseModel):
    """A W&B run for the job. The API key comes in WANDB_API_KEY, never in the spec."""

    type: Literal["wandb"] = "wandb"
    project: str
    name: str | None = None  # default: the job id
    entity: str | None = None
    tags: list[str] = Field(default_factory=list)
    base_url: str | None = None  # a self-hosted W&B server; default: W&B's cloud
    mode: Literal["online", "offline"] = "online"  # offline writes the run to `dir` only
    dir: str | None = None  # where W&B keeps the run's files (default: the trainer's working directory)


class MlflowIntegration(BaseModel):
    """An MLflow run for the job. Credentials come in MLFLOW_TRACKING_TOKEN or
    MLFLOW_TRACKING_USERNAME/PASSWORD, never in the spec."""

    type: Literal["mlflow"] = "mlflow"
    experiment: str
    run_name: str | None = None  # default: the job id
    tracking_uri: str


Integration = Annotated[WandbIntegration | MlflowIntegration, Field(discriminator="type")]


class JobSpec(BaseModel):
    job_id: str
    attempt: int = Field(default=1, ge=1)  # which start of this job (1-based): names its Kubernetes Job
    base_model: BaseModelRef
    method: Literal["supervised", "dpo"] = "supervised"
    mode: Literal["lora", "full"] = "lora"
    hyperparameters: Hyperparameters
    lora: LoraSettings = Field(default_factory=LoraSettings)
    training: TrainingOptions = Field(default_factory=TrainingOptions)
    seed: int = 0
    storage: LocalStoreConfig | S3StoreConfig
    training_file_key: str
    validation_file_key: str | None = None
    output_prefix: str  # e.g. "jobs/proj_x/ftjob-abc/": adapter, checkpoints and metrics go below it
    cache_dir: str = "~/.cache/ftapi"  # where built-in and downloaded base models are kept
    logging_steps: int = Field(default=1, ge=1)
    report_url: str | None = None  # the API; the per-job token comes in FTAPI_JOB_TOKEN
    resume_from: CheckpointRef | None = None  # continue an earlier attempt (its step count included)
    # Start from a tuned model's weights (its adapter, or its full weights) instead of the base
    # model's: a job on `ft:...`. Only safetensors and configs are read from there.
    init_weights_prefix: str | None = None
    eval_max_examples: int = Field(default=200, ge=1)  # exact match generates: cap its cost
    integrations: list[Integration] = Field(default_factory=list)  # experiment trackers to report to
    # Trainer processes (one per GPU the executor gives the job; 0: one per visible GPU). Above 1,
    # the trainer relaunches itself under torchrun (trainer/distributed.py); batch_size stays global.
    processes: int = Field(default=1, ge=0, le=64)
    fsdp: bool = False  # full fine-tuning with several processes: shard the model (FSDP) instead of DDP
    # How long a trainer whose local worker died (an orphan, sent SIGTERM) may take to finish its
    # step and save before it exits hard (trainer/stop.py): short enough that it is gone before the
    # dead worker's lease runs out and another attempt starts (api/dispatch/runs.orphan_grace_seconds).
    stop_grace_seconds: float = Field(default=DEFAULT_STOP_GRACE_SECONDS, ge=0)
