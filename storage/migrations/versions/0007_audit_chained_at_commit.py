"""audit chained at commit (PostgreSQL): audit_pending and the trigger that chains its rows

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 21:40:00.000000

An audited action used to lock the chain's head when it appended its entry and keep the
lock until its commit: every audited action on PostgreSQL waited for the one before it
through that one's last round trips and commit (measured with ten officers filing at
once: a filed tip waited 10 ms on average for the lock; benchmarks/audit_chain). Now the action
queues its entry in audit_pending, without a lock, and a deferred constraint trigger
chains it into audit_log during the commit: the head's lock is held inside the server,
from the trigger to the end of the commit, with no round trip to the bot in between.

The trigger hashes what append_audit hashed in one statement before (the canonical form
with the id and the previous hash filled in, storage/audit_repo.py), and the entry lands
in audit_log in the committing transaction, so it exists exactly when the action does;
audit_pending never holds a committed row. SQLite (one writer at a time anyway) keeps
appending in Python; the table exists there too so that both schemas are the same.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# As in storage/audit_repo.py and bot/audit.py; fixed for good: a new key would let an
# old appender and a new one start two heads, and a new genesis would break every chain.
_AUDIT_LOCK_KEY = 0x6662_6175_6469_7431
_GENESIS = "0" * 64
_HEAD_ID = 1
# The SQLSTATE the trigger refuses a commit with when appending would fork the chain.
HEAD_MISSING_SQLSTATE = "FB001"

_CHAIN_FUNCTION = f"""
CREATE FUNCTION fusionbot_chain_audit_entry() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head_last_id integer;
    head_last_hash varchar(64);
    existing integer;
    new_id integer;
    new_hash varchar(64);
BEGIN
    -- The head's row lock serialises the committing appenders: a second one waits here
    -- for the first's commit, then reads the head it left (READ COMMITTED).
    SELECT last_id, last_hash INTO head_last_id, head_last_hash
    FROM audit_head WHERE id = {_HEAD_ID} FOR UPDATE;
    IF NOT FOUND THEN
        -- No head to lock yet (a new log): the advisory lock serialises appenders until
        -- one head exists; then read it again (another appender may have made it).
        PERFORM pg_advisory_xact_lock({_AUDIT_LOCK_KEY});
        SELECT last_id, last_hash INTO head_last_id, head_last_hash
        FROM audit_head WHERE id = {_HEAD_ID} FOR UPDATE;
        IF NOT FOUND THEN
            SELECT max(id) INTO existing FROM audit_log;
            IF existing IS NOT NULL THEN
                RAISE EXCEPTION USING
                    ERRCODE = '{HEAD_MISSING_SQLSTATE}',
                    MESSAGE = format(
                        'the audit head is missing but the log has rows up to %s; '
                        'run `fusionbot audit verify`', existing);
            END IF;
            head_last_id := 0;
            head_last_hash := '{_GENESIS}';
            INSERT INTO audit_head (id, last_id, last_hash)
            VALUES ({_HEAD_ID}, head_last_id, head_last_hash);
        END IF;
    END IF;
    new_id := head_last_id + 1;
    new_hash := encode(sha256(convert_to(
        NEW.document_start || new_id::text || ',"prev_hash":' || to_json(head_last_hash)::text
        || NEW.document_end, 'UTF8')), 'hex');
    INSERT INTO audit_log (id, at, actor, action, subject, details, prev_hash, hash)
    VALUES (new_id, NEW.at, NEW.actor, NEW.action, NEW.subject, NEW.details,
            head_last_hash, new_hash);
    UPDATE audit_head SET last_id = new_id, last_hash = new_hash WHERE id = {_HEAD_ID};
    DELETE FROM audit_pending WHERE id = NEW.id;
    RETURN NULL;
END
$$
"""

# Deferred: it runs during the commit, after everything else the action did.
_CHAIN_TRIGGER = """
CREATE CONSTRAINT TRIGGER audit_pending_chain
AFTER INSERT ON audit_pending
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION fusionbot_chain_audit_entry()
"""


def upgrade() -> None:
    op.create_table(
        "audit_pending",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("document_start", sa.Text(), nullable=False),
        sa.Column("document_end", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_pending")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CHAIN_FUNCTION)
        op.execute(_CHAIN_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_pending_chain ON audit_pending")
        op.execute("DROP FUNCTION fusionbot_chain_audit_entry()")
    op.drop_table("audit_pending")
