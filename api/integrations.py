"""The `integrations` of a fine-tuning job: W&B (OpenAI's shape) and, beyond OpenAI, MLflow.

Checked when the job is created (an unknown type, a bad field, or a tracker this deployment has
not configured is a 400 naming the field), stored as given, and turned into the trainer's
integration specs at dispatch. Where a tracker is (a self-hosted W&B's URL, the MLflow tracking
server) is the operator's setting, never the user's: a job cannot make trainers talk to arbitrary
hosts. Tracker credentials travel to the trainer as secret environment variables, like the storage
keys, never inside the spec.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from api.errors import InvalidRequest
from trainer.spec import Integration, MlflowIntegration, WandbIntegration

MAX_INTEGRATIONS = 5  # OpenAI's limit


class WandbConfig(BaseModel):
    """FTAPI_WANDB__*: where W&B runs go."""

    base_url: str | None = Field(default=None, description="A self-hosted W&B server; default W&B's cloud.")
    api_key: SecretStr | None = Field(default=None, description="Handed to trainers as WANDB_API_KEY.")
    mode: Literal["online", "offline"] = Field(
        default="online", description="offline: runs are written as files under `dir` (no server)."
    )
    dir: str | None = Field(default=None, description="Where trainers keep W&B's run files.")

    @property
    def usable(self) -> bool:
        return self.mode == "offline" or self.api_key is not None


class MlflowConfig(BaseModel):
    """FTAPI_MLFLOW__*: the MLflow tracking server runs go to."""

    tracking_uri: str | None = Field(default=None, description="e.g. http://mlflow:5000")
    tracking_token: SecretStr | None = Field(default=None, description="Handed on as MLFLOW_TRACKING_TOKEN.")
    username: str | None = None
    password: SecretStr | None = None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WandbParams(_Strict):
    project: str = Field(min_length=1, max_length=128)
    name: str | None = Field(default=None, max_length=128)
    entity: str | None = Field(default=None, max_length=128)
    tags: list[str] | None = Field(default=None, max_length=50)


class MlflowParams(_Strict):
    experiment: str = Field(min_length=1, max_length=256)
    run_name: str | None = Field(default=None, max_length=256)


class _WandbEntry(_Strict):
    type: Literal["wandb"]
    wandb: WandbParams


class _MlflowEntry(_Strict):
    type: Literal["mlflow"]
    mlflow: MlflowParams


_ENTRIES: dict[str, type[_WandbEntry] | type[_MlflowEntry]] = {"wandb": _WandbEntry, "mlflow": _MlflowEntry}


def _param(index: int, loc: tuple[Any, ...]) -> str:
    return ".".join([f"integrations.{index}", *(str(p) for p in loc)])


def check_integrations(
    raw: list[dict[str, Any]] | None, wandb: WandbConfig, mlflow: MlflowConfig
) -> list[dict[str, Any]] | None:
    """The job's integrations, normalised (every key present, as the job object shows them).

    Raises InvalidRequest (param `integrations.N.<field>`) for an unknown type, a bad field, or a
    tracker that this deployment has not configured."""
    if raw is None:
        return None
    if len(raw) > MAX_INTEGRATIONS:
        raise InvalidRequest(f"At most {MAX_INTEGRATIONS} integrations per job.", param="integrations")
    out = []
    for n, item in enumerate(raw):
        kind = item.get("type")
        entry_type = _ENTRIES.get(kind) if isinstance(kind, str) else None
        if entry_type is None:
            raise InvalidRequest(
                f"Unsupported integration type {kind!r}: this server supports 'wandb' and 'mlflow'.",
                param=_param(n, ("type",)),
            )
        try:
            entry = entry_type.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidRequest(
                f"Invalid integration: {first['msg']}.", param=_param(n, tuple(first["loc"]))
            ) from None
        if isinstance(entry, _WandbEntry):
            for tag in entry.wandb.tags or []:
                if not 1 <= len(tag) <= 64:
                    raise InvalidRequest(
                        "W&B tags are 1 to 64 characters.", param=_param(n, ("wandb", "tags"))
                    )
            if not wandb.usable:
                raise InvalidRequest(
                    "W&B is not configured on this server (FTAPI_WANDB__API_KEY).", param=_param(n, ("type",))
                )
        elif mlflow.tracking_uri is None:
            raise InvalidRequest(
                "MLflow is not configured on this server (FTAPI_MLFLOW__TRACKING_URI).",
                param=_param(n, ("type",)),
            )
        out.append(entry.model_dump())
    return out


def trainer_integrations(
    stored: list[dict[str, Any]] | None, wandb: WandbConfig, mlflow: MlflowConfig
) -> list[Integration]:
    """The stored integrations as the trainer's specs, with where each tracker is (settings)."""
    specs: list[Integration] = []
    for item in stored or []:
        if item.get("type") == "wandb":
            w = WandbParams.model_validate(item["wandb"])
            specs.append(
                WandbIntegration(
                    project=w.project,
                    name=w.name,
                    entity=w.entity,
                    tags=w.tags or [],
                    base_url=wandb.base_url,
                    mode=wandb.mode,
                    dir=wandb.dir,
                )
            )
        elif item.get("type") == "mlflow" and mlflow.tracking_uri:
            m = MlflowParams.model_validate(item["mlflow"])
            specs.append(
                MlflowIntegration(
                    experiment=m.experiment, run_name=m.run_name, tracking_uri=mlflow.tracking_uri
                )
            )
    return specs


def integration_env(wandb: WandbConfig, mlflow: MlflowConfig) -> dict[str, str]:
    """Tracker credentials for a trainer's environment (secrets: never in a spec or a log)."""
    env = {}
    if wandb.api_key is not None:
        env["WANDB_API_KEY"] = wandb.api_key.get_secret_value()
    if mlflow.tracking_token is not None:
        env["MLFLOW_TRACKING_TOKEN"] = mlflow.tracking_token.get_secret_value()
    if mlflow.username and mlflow.password is not None:
        env["MLFLOW_TRACKING_USERNAME"] = mlflow.username
        env["MLFLOW_TRACKING_PASSWORD"] = mlflow.password.get_secret_value()
    return env


def openai_visible(stored: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The integrations the job object lists: OpenAI's SDK types `integrations` as W&B entries
    only (a strict client rejects any other), so MLflow ones are kept but not shown there; the
    job's events say where each run is."""
    return [i for i in stored or [] if i.get("type") == "wandb"]
