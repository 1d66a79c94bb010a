"""jobs that continue a tuned model (its base model and starting weights); checkpoint permissions

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fine_tuning_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("base_model", sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column("init_weights_prefix", sa.String(length=1024), nullable=True))
    op.create_table(
        "checkpoint_permissions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=512), nullable=False),
        sa.Column("owner_project_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["owner_project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model", "project_id", name="uq_checkpoint_permissions_model_project"),
    )
    with op.batch_alter_table("checkpoint_permissions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_checkpoint_permissions_model"), ["model"])
        batch_op.create_index(batch_op.f("ix_checkpoint_permissions_owner_project_id"), ["owner_project_id"])
        batch_op.create_index(batch_op.f("ix_checkpoint_permissions_project_id"), ["project_id"])


def downgrade() -> None:
    op.drop_table("checkpoint_permissions")
    with op.batch_alter_table("fine_tuning_jobs", schema=None) as batch_op:
        batch_op.drop_column("init_weights_prefix")
        batch_op.drop_column("base_model")
