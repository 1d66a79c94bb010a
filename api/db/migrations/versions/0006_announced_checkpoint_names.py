"""announced checkpoint names: the name a checkpoint was announced under keeps resolving after the
final checkpoint takes the job's model name

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fine_tuning_job_checkpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("announced_name", sa.String(length=512), nullable=True))
        batch_op.create_index(batch_op.f("ix_fine_tuning_job_checkpoints_announced_name"), ["announced_name"])


def downgrade() -> None:
    with op.batch_alter_table("fine_tuning_job_checkpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fine_tuning_job_checkpoints_announced_name"))
        batch_op.drop_column("announced_name")
