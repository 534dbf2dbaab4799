"""the analysts' queue: open tips by urgency, then oldest first, from an index

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 02:50:00.000000

`!status` lists the open tips most urgent first, then oldest first, reading the first
twenty of this partial index in order instead of sorting every open tip. The urgencies'
names sort in their order of urgency (immediate, priority, routine), which the index
relies on (tested in tests/test_status_lines.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The same condition as storage/tables.py's OPEN_TIP, written out: a migration must not
# change when code does, and SQLite uses a partial index only for its own condition.
_OPEN_TIP = sa.text("state IN ('new', 'claimed', 'needs_info') AND purged_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_tips_queue",
        "tips",
        ["urgency", "id"],
        sqlite_where=_OPEN_TIP,
        postgresql_where=_OPEN_TIP,
    )


def downgrade() -> None:
    op.drop_index("ix_tips_queue", table_name="tips")
