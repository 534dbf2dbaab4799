"""matrix state: handled_events (was slack_events), outbox ref index

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 13:40:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Matrix event ids join Slack's: one table of platform events already handled.
    op.rename_table("slack_events", "handled_events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE handled_events RENAME CONSTRAINT pk_slack_events TO pk_handled_events"
        )
    op.create_index("ix_outbox_platform_ref", "outbox", ["platform_ref"])


def downgrade() -> None:
    op.drop_index("ix_outbox_platform_ref", table_name="outbox")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE handled_events RENAME CONSTRAINT pk_handled_events TO pk_slack_events"
        )
    op.rename_table("handled_events", "slack_events")
