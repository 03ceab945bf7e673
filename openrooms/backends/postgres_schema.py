"""The PostgreSQL schema of :mod:`openrooms.backends.postgres`: its numbered migrations, and
how a schema's version is read and brought up to date.

Migrations only ever add: version N's script runs once, in the transaction that records N in
``openrooms_schema``, under a transaction-scoped advisory lock on the schema's name, so two
processes upgrading at once apply each script once (the second waits, then finds nothing to
do). :func:`openrooms.backends.postgres.upgrade` (``openrooms db upgrade``) applies them.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg
from psycopg import sql

from openrooms.errors import BackendConfigError

__all__ = [
    "FOLLOW_LOCK_CLASS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "UPGRADE_LOCK_CLASS",
    "migrate",
    "schema_version",
]

UPGRADE_LOCK_CLASS: Final = 0x6F72
"""First key of the upgrade's advisory lock (the second is hashtext of the schema's name)."""
FOLLOW_LOCK_CLASS: Final = 0x6F66
"""First key of a follower's advisory lock on a room (the second: hashtext of schema/room);
migration 2's events trigger names it as 28518."""

# Version 1: the tables and the functions commits call. Ids are COLLATE "C": rooms list and
# fall due in code-point order (as in the other stores), and count_rooms' prefix range can use
# the primary key. rooms.body is the whole state as JSON (text, never jsonb: jsonb reorders
# keys and refuses \u0000); the hot columns mirror what queries filter on, and lease_token
# mirrors the current lease's fencing token so a step's UPDATE checks it with the version.
# fillfactor 80: most steps change no indexed column, so their updates stay on the page (HOT).
# events: one row per commit, not per event (as in SQLite): the events first_seq..last_seq as
# a JSON array of compact rows (sqlite._event_row). A step writes two to four events, and a row
# each cost a third more per commit than one row (bench/postgres.py); reads explode the
# batches and filter in Python. The primary key (room_id, first_seq) finds a room's log from
# any seq, and refuses a second batch at the same place.
_V1: Final = """
CREATE TABLE rooms (
    id text COLLATE "C" PRIMARY KEY,
    workflow_id text NOT NULL,
    status text NOT NULL,
    version bigint NOT NULL,
    lease_token bigint NOT NULL DEFAULT 0,
    created_at bigint NOT NULL,
    due_at bigint,
    body text NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX rooms_by_created ON rooms (created_at DESC, id DESC);
CREATE INDEX rooms_by_status ON rooms (status, created_at DESC, id DESC);
CREATE INDEX rooms_by_workflow ON rooms (workflow_id, created_at DESC, id DESC);
CREATE INDEX rooms_by_due ON rooms (due_at, id) WHERE due_at IS NOT NULL;
CREATE TABLE events (
    room_id text COLLATE "C" NOT NULL,
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (room_id, first_seq)
);
CREATE TABLE leases (
    room_id text COLLATE "C" PRIMARY KEY,
    owner text,
    token bigint NOT NULL,
    expires_at bigint NOT NULL,
    recoveries integer NOT NULL DEFAULT 0
);
CREATE INDEX leases_unreleased ON leases (expires_at, room_id) WHERE owner IS NOT NULL;
CREATE TABLE log_fences (
    room_id text COLLATE "C" PRIMARY KEY,
    token bigint NOT NULL
);
CREATE TABLE workflows (
    id text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    digest text NOT NULL,
    body text NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (id, version)
);

-- A commit that acquires the lease (p_owner given) or holds it (p_held) and may release it;
-- p_expected NULL: acquire only. Codes: 0 done, 1 no such room, 2 stale, 3 leased (by
-- o_owner until o_expires). The room's row is locked first: every lease change takes it,
-- so the lease row read after it is the latest. A refusal writes nothing.
CREATE FUNCTION openrooms_leased(
    p_room text, p_owner text, p_ttl bigint, p_now bigint, p_force boolean, p_held bigint,
    p_expected bigint, p_status text, p_version bigint, p_body text, p_due bigint,
    p_first bigint, p_last bigint, p_events text, p_release boolean
) RETURNS TABLE (o_code integer, o_token bigint, o_expires bigint, o_recoveries integer,
                 o_owner text)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_version bigint;
    v_token bigint;
    l_owner text;
    l_token bigint;
    l_expires bigint;
    l_recoveries integer;
    n_token bigint;
    n_expires bigint := 0;
    n_recoveries integer := 0;
BEGIN
    SELECT r.version, r.lease_token INTO v_version, v_token
        FROM rooms r WHERE r.id = p_room FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 1, NULL::bigint, NULL::bigint, NULL::integer, NULL::text;
        RETURN;
    END IF;
    IF p_owner IS NOT NULL THEN
        SELECT l.owner, l.token, l.expires_at, l.recoveries
            INTO l_owner, l_token, l_expires, l_recoveries
            FROM leases l WHERE l.room_id = p_room FOR UPDATE;
        IF l_owner IS NOT NULL AND l_owner <> p_owner AND l_expires > p_now AND NOT p_force THEN
            RETURN QUERY SELECT 3, l_token, l_expires, l_recoveries, l_owner;
            RETURN;
        END IF;
        IF p_expected IS NOT NULL AND v_version <> p_expected THEN
            RETURN QUERY SELECT 2, NULL::bigint, NULL::bigint, NULL::integer, NULL::text;
            RETURN;
        END IF;
        n_token := greatest(coalesce(l_token, 0), v_token) + 1;
        -- taken over from a holder that never let go (its lease expired, or is taken by
        -- force, unreleased): one recovery more; after a release (owner NULL), none
        IF l_owner IS NOT NULL THEN
            n_recoveries := l_recoveries + 1;
        END IF;
        n_expires := p_now + p_ttl;
    ELSE
        IF v_version <> p_expected OR v_token <> p_held THEN
            RETURN QUERY SELECT 2, NULL::bigint, NULL::bigint, NULL::integer, NULL::text;
            RETURN;
        END IF;
        n_token := p_held;
    END IF;
    IF p_expected IS NULL THEN
        UPDATE rooms SET lease_token = n_token WHERE id = p_room;
    ELSE
        UPDATE rooms SET status = p_status, version = p_version, body = p_body,
            due_at = p_due, lease_token = n_token
            WHERE id = p_room;
        IF p_events IS NOT NULL THEN
            INSERT INTO events (room_id, first_seq, last_seq, body)
                VALUES (p_room, p_first, p_last, p_events);
        END IF;
    END IF;
    IF p_owner IS NOT NULL THEN
        INSERT INTO leases AS l (room_id, owner, token, expires_at, recoveries)
            VALUES (p_room, CASE WHEN p_release THEN NULL ELSE p_owner END, n_token,
                    CASE WHEN p_release THEN 0 ELSE n_expires END,
                    CASE WHEN p_release THEN 0 ELSE n_recoveries END)
            ON CONFLICT (room_id) DO UPDATE SET owner = excluded.owner,
                token = excluded.token, expires_at = excluded.expires_at,
                recoveries = excluded.recoveries;
    ELSIF p_release THEN
        UPDATE leases l SET owner = NULL, expires_at = 0, recoveries = 0
            WHERE l.room_id = p_room AND l.token = n_token;
    END IF;
    RETURN QUERY SELECT 0, n_token, n_expires, n_recoveries, p_owner;
END
$fn$;

-- EventLog.append: the first seq must follow the log's last one and, with p_token, the
-- token must not be below the room's fence (raised to it). 0 done, 2 stale; a refusal
-- writes nothing. The fence row stays locked until commit, so a fence() racing this waits.
CREATE FUNCTION openrooms_append(
    p_room text, p_token bigint, p_first bigint, p_last bigint, p_events text
) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_last bigint;
BEGIN
    SELECT e.last_seq INTO v_last FROM events e WHERE e.room_id = p_room
        ORDER BY e.first_seq DESC LIMIT 1;
    IF p_first <> coalesce(v_last, 0) + 1 THEN
        RETURN 2;
    END IF;
    IF p_token IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM rooms r WHERE r.id = p_room AND r.lease_token > p_token) THEN
            RETURN 2;
        END IF;
        INSERT INTO log_fences AS f (room_id, token) VALUES (p_room, p_token)
            ON CONFLICT (room_id) DO UPDATE SET token = excluded.token
            WHERE f.token <= excluded.token;
        IF NOT FOUND THEN
            RETURN 2;
        END IF;
    END IF;
    INSERT INTO events (room_id, first_seq, last_seq, body)
        VALUES (p_room, p_first, p_last, p_events);
    RETURN 0;
END
$fn$;
"""

# Version 2: the events table's triggers, for live tails and an append-only log.
#
# NOTIFY only where someone follows the room. A NOTIFY costs a commit ~15% of a step, and
# takes a lock every notifying commit of the cluster queues on. So a follower holds an
# advisory lock on the room (shared, class FOLLOW_LOCK_CLASS) while it waits, and a commit's row
# trigger notifies only when it cannot take that lock exclusively. No wake-up is lost: a
# commit that got the lock holds it until it ends, so a follower arriving meanwhile waits for
# that commit and then reads its events; a commit after the follower took it notifies.
# (A row trigger: a statement trigger with a transition table cost more.)
_V2: Final = """
CREATE FUNCTION openrooms_events_notify() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    v_room text := TG_TABLE_SCHEMA || '/' || NEW.room_id;
BEGIN
    -- a follower holds this lock shared while it waits; nobody follows when we get it
    IF NOT pg_try_advisory_xact_lock(28518, hashtext(v_room)) THEN
        PERFORM pg_notify('openrooms_events', md5(v_room));
    END IF;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION openrooms_events_notify();

CREATE FUNCTION openrooms_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP <> 'UPDATE'
            AND coalesce(current_setting('openrooms.retention', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the OpenRooms event log is append-only: % on %.events refused',
        TG_OP, TG_TABLE_SCHEMA
        USING HINT = 'a retention job deletes events after SET LOCAL openrooms.retention = on';
END
$fn$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION openrooms_events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION openrooms_events_append_only();
"""

MIGRATIONS: Final[tuple[tuple[int, str], ...]] = ((1, _V1), (2, _V2))
"""(version, script) in order; :func:`upgrade` applies those a schema has not had."""
SCHEMA_VERSION: Final = MIGRATIONS[-1][0]

_VERSION_TABLE: Final = "openrooms_schema"


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The schema's OpenRooms version: 0 when it has no OpenRooms tables.

    Raises:
        BackendConfigError: the schema has a ``rooms`` table but no version table: tables
            of something else, which OpenRooms does not write over.
    """
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL, to_regclass('rooms') IS NOT NULL",
        (_VERSION_TABLE,),
    ).fetchone()
    assert row is not None
    if not row[0]:
        if row[1]:
            schema = conn.execute("SELECT current_schema()").fetchone()
            raise BackendConfigError(
                "postgres",
                f"schema {schema[0] if schema else '?'!r} has a rooms table that OpenRooms did "
                "not make; use another schema (?schema=NAME in the URL)",
            )
        return 0
    found = conn.execute(
        sql.SQL("SELECT max(version) FROM {}").format(sql.Identifier(_VERSION_TABLE))
    )
    value = found.fetchone()
    return int(value[0] or 0) if value else 0


def migrate(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    only_if_new: bool = False,
    target: int = SCHEMA_VERSION,
) -> tuple[int, int]:
    """Apply the migrations *schema* has not had, up to *target*, in one transaction under
    an advisory lock (a second process waits, then finds nothing to do). Returns the
    versions before and after. With *only_if_new*, a schema that already has a version is
    left as it is (opening a store sets up only a new schema)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (UPGRADE_LOCK_CLASS, schema))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        found = schema_version(conn)
        if only_if_new and found != 0:
            return found, found
        if found == 0:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, "
                    "applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(sql.Identifier(_VERSION_TABLE))
            )
        for version, script in MIGRATIONS:
            if found < version <= target:
                conn.execute(script.encode())
                conn.execute(
                    sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(
                        sql.Identifier(_VERSION_TABLE)
                    ),
                    (version,),
                )
        return found, max(found, min(target, SCHEMA_VERSION))
