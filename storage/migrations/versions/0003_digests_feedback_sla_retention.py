"""digests feedback sla retention

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 11:33:14.707937
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "alert_feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=255), nullable=False),
        sa.Column("partner_id", sa.String(length=64), nullable=True),
        sa.Column("useful", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_alert_feedback_alert_id_alerts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_feedback")),
    )
    with op.batch_alter_table("alert_feedback", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_feedback_alert_id"), ["alert_id"], unique=False)

    op.create_table(
        "digest_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("digest_key", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_digest_items_alert_id_alerts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digest_items")),
        sa.UniqueConstraint("alert_id", "target", name="uq_digest_items_alert_target"),
    )
    with op.batch_alter_table("digest_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_digest_items_alert_id"), ["alert_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_digest_items_digest_key"), ["digest_key"], unique=False
        )

    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retracted_by", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("retracted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("retracted_reason", sa.Text(), nullable=True))

    with op.batch_alter_table("tips", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sla_reminded_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:

    with op.batch_alter_table("tips", schema=None) as batch_op:
        batch_op.drop_column("reviewed_at")
        batch_op.drop_column("sla_reminded_at")

    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("retracted_reason")
        batch_op.drop_column("retracted_at")
        batch_op.drop_column("retracted_by")

    with op.batch_alter_table("digest_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_digest_items_digest_key"))
        batch_op.drop_index(batch_op.f("ix_digest_items_alert_id"))

    op.drop_table("digest_items")
    with op.batch_alter_table("alert_feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_feedback_alert_id"))

    op.drop_table("alert_feedback")
