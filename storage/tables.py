"""The database schema (SQLAlchemy Core). Change it only together with a migration."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    literal_column,
)

from storage.types import UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ADDRESS = 255

tips = Table(
    "tips",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("summary", Text, nullable=False),
    Column("category", String(16), nullable=False),
    Column("urgency", String(16), nullable=False),
    Column("location", Text),
    Column("region", String(64)),
    Column("when_text", Text),
    Column("details", Text),
    Column("state", String(16), nullable=False, index=True),
    Column("officer", String(ADDRESS), nullable=False, index=True),
    Column("intake_channel", String(ADDRESS), nullable=False),
    Column("filed_at", UTCDateTime, nullable=False),
    Column("claimed_by", String(ADDRESS)),
    Column("decided_by", String(ADDRESS)),
    Column("decided_at", UTCDateTime),
    Column("reason", Text),
    Column("duplicate_of", Integer, ForeignKey("tips.id")),
    Column("purged_at", UTCDateTime),
    # When the SLA reminder for an untriaged tip was posted (once per tip).
    Column("sla_reminded_at", UTCDateTime),
    # Last 28 CFR Part 23 review that validated the record; starts a new retention period.
    Column("reviewed_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("version", Integer, nullable=False, default=1),
    # Set by adapters whose platform may redeliver the same request (Slack retries).
    Column("source_key", String(255), unique=True),
)

OPEN_TIP_STATES = ("new", "claimed", "needs_info")
# Written out, not bound: SQLite uses a partial index only for a query whose condition is
# the index's own, constants included.
OPEN_TIP = and_(
    tips.c.state.in_([literal_column(f"'{state}'") for state in OPEN_TIP_STATES]),
    tips.c.purged_at.is_(None),
)
# The most recent open tips (the window "similar open tips" looks in) without reading the
# closed ones between them.
Index("ix_tips_open", tips.c.id, sqlite_where=OPEN_TIP, postgresql_where=OPEN_TIP)
# The analysts' queue, most urgent first and then oldest first: the urgencies' names sort
# in their order of urgency (immediate < priority < routine; tests/test_status_lines.py).
Index(
    "ix_tips_queue",
    tips.c.urgency,
    tips.c.id,
    sqlite_where=OPEN_TIP,
    postgresql_where=OPEN_TIP,
)

tip_notes = Table(
    "tip_notes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tip_id", Integer, ForeignKey("tips.id"), nullable=False, index=True),
    Column("kind", String(8), nullable=False),
    Column("actor", String(ADDRESS), nullable=False),
    Column("text", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
)

# The terms of open tips (significant words of summary and details, and the place), one row
# per term and tip, so that a review card asks only for the tips that share terms with its
# own instead of reading every open tip. Written with the tip when it is filed, deleted when
# it closes (and so before a rejected tip can be purged): no row holds a closed tip's words.
tip_terms = Table(
    "tip_terms",
    metadata,
    Column("term", String(80), primary_key=True),
    Column("tip_id", Integer, ForeignKey("tips.id"), primary_key=True, index=True),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Unique per outgoing operation: Matrix transaction id, Slack message metadata.
    Column("key", String(255), nullable=False, unique=True),
    Column("op", String(8), nullable=False),  # post | edit | delete
    Column("target", String(ADDRESS), nullable=False),
    Column("ephemeral_to", String(ADDRESS)),
    # The logical message (a tip's card, an alert copy) that edits refer back to.
    Column("message_key", String(255)),
    Column("payload", JSON, nullable=False),
    Column("state", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_until", UTCDateTime),
    Column("last_error", Text),
    Column("platform_ref", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Index("ix_outbox_due", "state", "next_attempt_at"),
    Index("ix_outbox_message", "message_key", "target"),
    # A reaction names the message it reacts to by the platform's id for it.
    Index("ix_outbox_platform_ref", "platform_ref"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(ADDRESS), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("details", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# PostgreSQL: an audited action's entry until its commit, when a deferred trigger
# (migration 0007) chains it into audit_log and deletes it: no committed row stays here.
# Hashed as ``document_start + id + ',"prev_hash":' + prev_hash + document_end``
# (bot.audit.document_around_chain). Unused on SQLite, which appends in Python.
audit_pending = Table(
    "audit_pending",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(ADDRESS), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("details", JSON, nullable=False),
    Column("document_start", Text, nullable=False),
    Column("document_end", Text, nullable=False),
)

# One row: where the chain ends, so that cutting rows off the end is detected too.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("last_id", Integer, nullable=False),
    Column("last_hash", String(64), nullable=False),
)

bot_state = Table(
    "bot_state",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tip_id", Integer, ForeignKey("tips.id"), nullable=False, index=True),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("tlp", String(16), nullable=False),
    Column("caveats", JSON, nullable=False),
    Column("category", String(16), nullable=False),
    Column("region", String(64)),
    # The partner ids named with to:, or null for every cleared, subscribed partner.
    Column("audience", JSON),
    Column("timing", String(8), nullable=False),  # now | digest | at
    Column("send_at", UTCDateTime),
    Column("state", String(12), nullable=False, index=True),  # draft|scheduled|released|retracted
    # The dissemination plan at release (who, who not and why): 28 CFR 23.20(f).
    Column("plan", JSON),
    Column("created_by", String(ADDRESS), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("released_by", String(ADDRESS)),
    Column("released_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("version", Integer, nullable=False, default=1),
    Column("retracted_by", String(ADDRESS)),
    Column("retracted_at", UTCDateTime),
    Column("retracted_reason", Text),
)

# An alert copy waiting for a partner's next digest (delivery = "digest").
digest_items = Table(
    "digest_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Integer, ForeignKey("alerts.id"), nullable=False, index=True),
    Column("partner_id", String(64), nullable=False),
    Column("target", String(ADDRESS), nullable=False),
    Column("queued_at", UTCDateTime, nullable=False),
    # Set when a digest took the item: "<partner>:<period ISO time>".
    Column("digest_key", String(255), index=True),
    UniqueConstraint("alert_id", "target", name="uq_digest_items_alert_target"),
)

alert_feedback = Table(
    "alert_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Integer, ForeignKey("alerts.id"), nullable=False, index=True),
    Column("actor", String(ADDRESS), nullable=False),
    Column("channel", String(ADDRESS), nullable=False),
    Column("partner_id", String(64)),
    Column("useful", Boolean, nullable=False),
    Column("comment", Text),
    Column("at", UTCDateTime, nullable=False),
)

# Platform events already handled: Slack sends the same event_id again when it thinks a
# delivery failed (X-Slack-Retry-Num); a Matrix sync after a crash may repeat events handled
# just before it. Neither may act twice.
handled_events = Table(
    "handled_events",
    metadata,
    Column("event_id", String(255), primary_key=True),
    Column("received_at", UTCDateTime, nullable=False),
)
