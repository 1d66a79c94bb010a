"""Database rows. They are not wire objects: schemas turn them into OpenAI shapes explicitly.

Times are integer microseconds since the epoch (`*_us`): the wire wants seconds, cursors want a strict order.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from api.db.base import Base


class ProjectRow(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at_us: Mapped[int] = mapped_column(BigInteger)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # First characters of the key, so an operator can tell keys apart without the secret.
    key_hint: Mapped[str] = mapped_column(String(16))
    created_at_us: Mapped[int] = mapped_column(BigInteger)


class FileRow(Base):
    __tablename__ = "files"
    __table_args__ = (
        Index("ix_files_project_created", "project_id", "created_at_us", "id"),
        UniqueConstraint("project_id", "idempotency_key", name="uq_files_project_idempotency"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(512))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    status_details: Mapped[str | None] = mapped_column(Text)
    storage_key: Mapped[str] = mapped_column(String(1024))
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(256))


class UploadRow(Base):
    __tablename__ = "uploads"
    __table_args__ = (
        UniqueConstraint("project_id", "idempotency_key", name="uq_uploads_project_idempotency"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(512))
    purpose: Mapped[str] = mapped_column(String(32))
    mime_type: Mapped[str] = mapped_column(String(128))
    bytes: Mapped[int] = mapped_column(BigInteger)
    # pending | completing | completed | cancelled | expired ("completing" is shown as pending)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    file_expires_after: Mapped[int | None] = mapped_column(BigInteger)
    file_id: Mapped[str | None] = mapped_column(ForeignKey("files.id", ondelete="SET NULL"))
    idempotency_key: Mapped[str | None] = mapped_column(String(256))


class UploadPartRow(Base):
    __tablename__ = "upload_parts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), index=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(String(1024))
    created_at_us: Mapped[int] = mapped_column(BigInteger)


class FineTuningJobRow(Base):
    __tablename__ = "fine_tuning_jobs"
    __table_args__ = (
        Index("ix_jobs_project_created", "project_id", "created_at_us", "id"),
        Index("ix_jobs_status", "status"),
        UniqueConstraint("project_id", "idempotency_key", name="uq_jobs_project_idempotency"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(256))  # as the user asked: a base model or an ft: model
    # The catalogue model underneath (null: `model` is one) and, for a job that continues a tuned
    # model, the storage prefix of the weights it starts from (that model's adapter or full weights).
    base_model: Mapped[str | None] = mapped_column(String(256))
    init_weights_prefix: Mapped[str | None] = mapped_column(String(1024))
    training_file: Mapped[str] = mapped_column(String(64))
    validation_file: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(16))
    # What the user asked for ("auto" kept) and, from validation on, the resolved numbers.
    hyperparameters: Mapped[dict[str, object]] = mapped_column(JSON)
    resolved_hyperparameters: Mapped[dict[str, object] | None] = mapped_column(JSON)
    suffix: Mapped[str | None] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(BigInteger)
    job_metadata: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON)
    integrations: Mapped[list[dict[str, object]] | None] = mapped_column(JSON)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(512), index=True)
    # DELETE /v1/models/{fine_tuned_model}: the job stays listed, its model no longer resolves.
    model_deleted_at: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[dict[str, str | None] | None] = mapped_column(JSON)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger)
    result_files: Mapped[list[str]] = mapped_column(JSON)
    n_examples: Mapped[int | None] = mapped_column(Integer)
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)
    estimated_finish: Mapped[int | None] = mapped_column(BigInteger)
    # Dispatch: who holds the job and until when (a lease, so a dead worker's job is taken over).
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(256))
    executor_handle: Mapped[str | None] = mapped_column(String(256))
    # SHA-256 of the per-job token the trainer reports with (it can write this job's events only).
    token_hash: Mapped[str | None] = mapped_column(String(64))


class FineTuningJobEventRow(Base):
    __tablename__ = "fine_tuning_job_events"

    # A sequence gives events a strict order even within one microsecond.
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(String(64), unique=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"), index=True)
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    level: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, object] | None] = mapped_column(JSON)


class FineTuningJobCheckpointRow(Base):
    """A saved training state: resumable by the trainer, servable under its `...:ckpt-step-N` name."""

    __tablename__ = "fine_tuning_job_checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "step_number", name="uq_checkpoints_job_step"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"), index=True)
    step_number: Mapped[int] = mapped_column(Integer)
    fine_tuned_model_checkpoint: Mapped[str] = mapped_column(String(512), index=True)
    # The name "Checkpoint created ..." announced, kept when the final checkpoint takes the job's
    # model name: a name a user copied from the events must keep resolving (to the same weights).
    announced_name: Mapped[str | None] = mapped_column(String(512), index=True)
    metrics: Mapped[dict[str, object]] = mapped_column(JSON)
    storage_prefix: Mapped[str] = mapped_column(String(1024))
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    model_deleted_at: Mapped[int | None] = mapped_column(BigInteger)


class CheckpointPermissionRow(Base):
    """A tuned model (or checkpoint) of one project shared with another: `cp_...`, as at OpenAI."""

    __tablename__ = "checkpoint_permissions"
    __table_args__ = (
        UniqueConstraint("model", "project_id", name="uq_checkpoint_permissions_model_project"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(512), index=True)  # the shared ft:... name
    owner_project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    created_at_us: Mapped[int] = mapped_column(BigInteger)


class WebhookEndpointRow(Base):
    """Where a project's events go (`/v1/webhook_endpoints`). The signing secret is kept as given
    out: deliveries are signed with it (like storage keys, it is protected by the database's access)."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        Index("ix_webhook_endpoints_project_created", "project_id", "created_at_us", "id"),
        UniqueConstraint("project_id", "idempotency_key", name="uq_webhook_endpoints_project_idempotency"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    url: Mapped[str] = mapped_column(String(2048))
    event_types: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(128))
    # After a rotation that keeps the old secret for 24 hours, deliveries carry both signatures.
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_until: Mapped[int | None] = mapped_column(BigInteger)
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str | None] = mapped_column(String(256))


class WebhookDeliveryRow(Base):
    """One event for one endpoint, sent until it is taken (2xx) or its retries run out. Written in
    the transaction that ends the job, so no event is lost; the sender's state is here, so a
    restarted process continues where the previous one stopped."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at_us"),
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at_us", "id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the webhook-id header (msg_...)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)  # the exact body: its bytes are what is signed
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at_us: Mapped[int] = mapped_column(BigInteger)
    lease_until_us: Mapped[int | None] = mapped_column(BigInteger)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    log: Mapped[list[dict[str, object]]] = mapped_column(JSON)  # one entry per attempt
    created_at_us: Mapped[int] = mapped_column(BigInteger)
    delivered_at_us: Mapped[int | None] = mapped_column(BigInteger)
