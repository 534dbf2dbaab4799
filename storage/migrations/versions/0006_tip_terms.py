"""tip terms: the index of open tips' words and places, and of open tips, for "similar open tips"

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 16:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_OPEN = ("new", "claimed", "needs_info")
_OPEN_TIP = sa.text("state IN ('new', 'claimed', 'needs_info') AND purged_at IS NULL")
_BATCH = 1000


def upgrade() -> None:
    op.create_table(
        "tip_terms",
        sa.Column("term", sa.String(length=80), nullable=False),
        sa.Column("tip_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tip_id"], ["tips.id"], name=op.f("fk_tip_terms_tip_id_tips")),
        sa.PrimaryKeyConstraint("term", "tip_id", name=op.f("pk_tip_terms")),
    )
    with op.batch_alter_table("tip_terms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tip_terms_tip_id"), ["tip_id"], unique=False)
    op.create_index(
        "ix_tips_open", "tips", ["id"], sqlite_where=_OPEN_TIP, postgresql_where=_OPEN_TIP
    )
    _backfill()


def _backfill() -> None:
    """The terms of the tips open now, computed by the bot's own term function (the index
    must hold exactly what the bot would have written when filing them)."""
    from bot.similarity import tip_terms

    tips = sa.table(
        "tips",
        sa.column("id", sa.Integer),
        sa.column("summary", sa.Text),
        sa.column("details", sa.Text),
        sa.column("location", sa.Text),
        sa.column("state", sa.String),
        sa.column("purged_at", sa.DateTime),
    )
    terms = sa.table("tip_terms", sa.column("term", sa.String), sa.column("tip_id", sa.Integer))
    bind = op.get_bind()
    after = 0
    while True:
        rows = bind.execute(
            sa.select(tips.c.id, tips.c.summary, tips.c.details, tips.c.location)
            .where(tips.c.state.in_(_OPEN), tips.c.purged_at.is_(None), tips.c.id > after)
            .order_by(tips.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        values = [
            {"term": term, "tip_id": row.id}
            for row in rows
            for term in tip_terms(row.summary, row.details, row.location)
        ]
        if values:
            bind.execute(terms.insert(), values)
        after = rows[-1].id


def downgrade() -> None:
    op.drop_index("ix_tips_open", table_name="tips")
    with op.batch_alter_table("tip_terms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tip_terms_tip_id"))
    op.drop_table("tip_terms")
