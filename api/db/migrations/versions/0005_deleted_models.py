"""deleted models: jobs and checkpoints remember a deleted model; model names are looked up

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fine_tuning_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_deleted_at", sa.BigInteger(), nullable=True))
        batch_op.create_index(batch_op.f("ix_fine_tuning_jobs_fine_tuned_model"), ["fine_tuned_model"])
    with op.batch_alter_table("fine_tuning_job_checkpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_deleted_at", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_fine_tuning_job_checkpoints_fine_tuned_model_checkpoint"),
            ["fine_tuned_model_checkpoint"],
        )


def downgrade() -> None:
    with op.batch_alter_table("fine_tuning_job_checkpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fine_tuning_job_checkpoints_fine_tuned_model_checkpoint"))
        batch_op.drop_column("model_deleted_at")
    with op.batch_alter_table("fine_tuning_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fine_tuning_jobs_fine_tuned_model"))
        batch_op.drop_column("model_deleted_at")
