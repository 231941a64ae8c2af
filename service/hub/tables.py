"""The hub's tables (SQLAlchemy Core), for SQLite and PostgreSQL alike (docs/hub.md, "Storage").

A session's rows keep the Pi logbook's columns (service/logbook/schema.py) with portable types (REAL -> Double,
TEXT -> Text, BLOB -> LargeBinary, INTEGER -> Integer/BigInteger), so the text the Pi stored is the text the hub
stores and ``HubBook`` reads it through the very checks ``Logbook`` uses. Where the Pi orders by ``rowid`` the
hub has a ``part`` column (k of the part ``strides.<k>``/``raw.<k>`` a row came in) and an ``id`` that grows in
insertion order: ``(part, id)`` is the Pi's rowid order (a part's rows are inserted in that order), and a changed
part replaces only its own rows.

The migrations in ``migrations/versions`` create these tables; a test checks the two never drift apart.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
)

from ..logbook.book import StoredRows

#: a growing row id on both backends (SQLite: INTEGER PRIMARY KEY, the rowid; PostgreSQL: BIGINT identity)
RowId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# ------------------------------------------------------------------ people
runners = Table(
    "runners",
    metadata,
    Column("id", Text, primary_key=True),
    Column("display_name", Text),
    Column("created_epoch", Double, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("username", Text, primary_key=True),
    Column("role", Text, nullable=False),  # 'coach' | 'runner' (checked by HubStore)
    Column("password_hash", Text, nullable=False),  # argon2id (service/web/auth.py's hasher)
    Column("runner_id", Text, ForeignKey("runners.id")),  # a runner user's own runner
    Column("created_epoch", Double, nullable=False),
)

squads = Table(
    "squads",
    metadata,
    Column("name", Text, primary_key=True),
    Column("coach", Text, ForeignKey("users.username"), nullable=False),
)

squad_members = Table(
    "squad_members",
    metadata,
    Column("squad", Text, ForeignKey("squads.name"), nullable=False),
    Column("runner_id", Text, ForeignKey("runners.id"), nullable=False),
    PrimaryKeyConstraint("squad", "runner_id"),
)

#: one Pi credential per runner: the SHA-256 hex of the token (high entropy: no KDF needed)
tokens = Table(
    "tokens",
    metadata,
    Column("runner_id", Text, ForeignKey("runners.id"), primary_key=True),
    Column("sha256", Text, nullable=False, unique=True),
    Column("issued_epoch", Double, nullable=False),
)

#: every version of a runner's targets is kept (who set what, when); the newest is in force
targets = Table(
    "targets",
    metadata,
    Column("runner_id", Text, ForeignKey("runners.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("overlay", Text, nullable=False),  # JSON {section: {key: value}}, validated (service/targets.py)
    Column("set_by", Text, nullable=False),
    Column("set_epoch", Double, nullable=False),
    PrimaryKeyConstraint("runner_id", "version"),
)

coach_notes = Table(
    "coach_notes",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("session", Text, nullable=False),
    Column("runner_id", Text, nullable=False),
    Column("author", Text, nullable=False),
    Column("at_epoch", Double, nullable=False),
    Column("text", Text, nullable=False),
    Index(None, "runner_id", "id"),
)

# ------------------------------------------------------------------ sync state
#: one row per session a Pi began to send: whose it is, the manifest last applied (or being sent), complete or not
uploads = Table(
    "uploads",
    metadata,
    Column("session", Text, primary_key=True),
    Column("runner_id", Text, ForeignKey("runners.id"), nullable=False),
    Column("manifest", Text),  # JSON of the manifest last applied (NULL until the first complete)
    Column("complete", Boolean, nullable=False, default=False),
    Column("updated_epoch", Double, nullable=False),
    Index(None, "runner_id"),
)

#: parts by (session, name, sha256): staged ones hold their body until ``complete`` applies them; applied ones
#: keep only their hash (what the hub holds), so a resumed or changed sync sends only what differs
parts = Table(
    "parts",
    metadata,
    Column("session", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("body", LargeBinary),  # NULL once applied
    Column("applied", Boolean, nullable=False, default=False),
    Column("staged_epoch", Double, nullable=False),
    PrimaryKeyConstraint("session", "name", "sha256"),
)

# ------------------------------------------------------------------ the logbook's tables, as on the Pi
#: the Pi's ``sessions`` columns in its order (``Logbook._SESSION_COLS``), then the hub's own
SESSION_COLUMNS = StoredRows._SESSION_KEYS

sessions = Table(
    "sessions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("runner", Text),
    Column("started_epoch", Double),
    Column("clock_synchronised", Text),
    Column("source", Text),
    Column("calibration", Text),
    Column("config", Text),
    Column("ended_epoch", Double),
    Column("ended_how", Text),
    Column("summary", Text),
    Column("notes", Text),
    Column("duration_s", Double),
    Column("distance_m", Double),
    Column("origin", Text),
    Column("ended_reason", Text),
    Column("received_epoch", Double),  # the hub's: when the last complete applied it
    Index(None, "runner", "started_epoch"),
)

strides = Table(
    "strides",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("session", Text, nullable=False),
    Column("t_start", Double, nullable=False),
    Column("t_end", Double, nullable=False),
    Column("cadence_spm", Double),
    Column("pelvic_tilt_deg", Double),
    Column("trunk_lean_deg", Double),
    Column("stack_deg", Double),
    Column("steady", Integer),
    Column("event", Text, nullable=False),
    Column("part", Integer, nullable=False),  # the hub's: k of the part it came in
    Index(None, "session", "part", "id"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("session", Text, nullable=False),
    Column("alert_id", BigInteger, nullable=False),
    Column("t", Double),
    Column("kind", Text),
    Column("payload", Text, nullable=False),
    Column("delivered", Integer, nullable=False, default=0),  # the Pi's business: not synced
    Column("delivered_at", Double),
    Column("queued", Integer, nullable=False, default=0),
    Column("part", Integer, nullable=False),  # the hub's: k of the part it came in
    UniqueConstraint("session", "alert_id"),
)

events = Table(
    "events",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("session", Text, nullable=False),
    Column("t", Double),
    Column("type", Text, nullable=False),
    Column("event", Text, nullable=False),
    Column("part", Integer, nullable=False),  # the hub's: k of the part it came in
    Index(None, "session", "part", "id"),
)

raw_chunks = Table(
    "raw_chunks",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("session", Text, nullable=False),
    Column("t0", Double, nullable=False),
    Column("t1", Double, nullable=False),
    Column("n", Integer, nullable=False),
    Column("trunk", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("part", Integer, nullable=False),  # the hub's: k of the raw.<k> part the row came in
    Index(None, "session", "t0"),
    Index(None, "session", "part"),
)

#: a complete session's headline figures, computed once when it is stored (``figures.py``, with the report's own
#: code over ``HubBook``), so the squad and runner pages read one row per session, not every stride
headlines = Table(
    "headlines",
    metadata,
    Column("session", Text, primary_key=True),
    Column("runner_id", Text, nullable=False),
    Column("started_epoch", Double),
    Column("duration_s", Double),
    Column("running_s", Double),  # seconds of running (the report's)
    Column("alert_s", Double),  # seconds with any posture alert active (the report's, gaps and pauses left out)
    Column("alerts", Integer),  # alerts raised (reminders not counted)
    Column("distance_m", Double),
    Column("pct_stacked", Double),
    Column("alerts_per_h", Double),
    Column("alerts_per_km", Double),
    Column("median_tilt_deg", Double),
    Column("median_stack_deg", Double),
    Column("note", Text),  # why there are no figures (e.g. no strides)
    Column("computed_epoch", Double, nullable=False),
    Index(None, "runner_id", "started_epoch"),
)

#: the tables of one session's data: what ``complete`` replaces and ``delete_session`` removes
SESSION_TABLES = (strides, alerts, events, raw_chunks, headlines)
