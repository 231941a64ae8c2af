"""The hub's first tables (service/hub/tables.py as of issue 15).

Revision ID: 0001
Revises:
Create Date: 2026-12-05 07:41:36.148828
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("session", sa.Text(), nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("t", sa.Double(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("delivered_at", sa.Double(), nullable=True),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("session", "alert_id", name=op.f("uq_alerts_session_alert_id")),
    )
    op.create_table(
        "coach_notes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("session", sa.Text(), nullable=False),
        sa.Column("runner_id", sa.Text(), nullable=False),
        sa.Column("author", sa.Text(), nullable=False),
        sa.Column("at_epoch", sa.Double(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coach_notes")),
    )
    with op.batch_alter_table("coach_notes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_coach_notes_runner_id_id"), ["runner_id", "id"], unique=False)

    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("session", sa.Text(), nullable=False),
        sa.Column("t", sa.Double(), nullable=True),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_session_part_id"), ["session", "part", "id"], unique=False)

    op.create_table(
        "headlines",
        sa.Column("session", sa.Text(), nullable=False),
        sa.Column("runner_id", sa.Text(), nullable=False),
        sa.Column("started_epoch", sa.Double(), nullable=True),
        sa.Column("duration_s", sa.Double(), nullable=True),
        sa.Column("running_s", sa.Double(), nullable=True),
        sa.Column("alert_s", sa.Double(), nullable=True),
        sa.Column("alerts", sa.Integer(), nullable=True),
        sa.Column("distance_m", sa.Double(), nullable=True),
        sa.Column("pct_stacked", sa.Double(), nullable=True),
        sa.Column("alerts_per_h", sa.Double(), nullable=True),
        sa.Column("alerts_per_km", sa.Double(), nullable=True),
        sa.Column("median_tilt_deg", sa.Double(), nullable=True),
        sa.Column("median_stack_deg", sa.Double(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("computed_epoch", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("session", name=op.f("pk_headlines")),
    )
    with op.batch_alter_table("headlines", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_headlines_runner_id_started_epoch"), ["runner_id", "started_epoch"], unique=False
        )

    op.create_table(
        "parts",
        sa.Column("session", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("staged_epoch", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("session", "name", "sha256", name=op.f("pk_parts")),
    )
    op.create_table(
        "raw_chunks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("session", sa.Text(), nullable=False),
        sa.Column("t0", sa.Double(), nullable=False),
        sa.Column("t1", sa.Double(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("trunk", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_chunks")),
    )
    with op.batch_alter_table("raw_chunks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_raw_chunks_session_part"), ["session", "part"], unique=False)
        batch_op.create_index(batch_op.f("ix_raw_chunks_session_t0"), ["session", "t0"], unique=False)

    op.create_table(
        "runners",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("created_epoch", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runners")),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("runner", sa.Text(), nullable=True),
        sa.Column("started_epoch", sa.Double(), nullable=True),
        sa.Column("clock_synchronised", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("calibration", sa.Text(), nullable=True),
        sa.Column("config", sa.Text(), nullable=True),
        sa.Column("ended_epoch", sa.Double(), nullable=True),
        sa.Column("ended_how", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("duration_s", sa.Double(), nullable=True),
        sa.Column("distance_m", sa.Double(), nullable=True),
        sa.Column("origin", sa.Text(), nullable=True),
        sa.Column("ended_reason", sa.Text(), nullable=True),
        sa.Column("received_epoch", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sessions_runner_started_epoch"), ["runner", "started_epoch"], unique=False)

    op.create_table(
        "strides",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("session", sa.Text(), nullable=False),
        sa.Column("t_start", sa.Double(), nullable=False),
        sa.Column("t_end", sa.Double(), nullable=False),
        sa.Column("cadence_spm", sa.Double(), nullable=True),
        sa.Column("pelvic_tilt_deg", sa.Double(), nullable=True),
        sa.Column("trunk_lean_deg", sa.Double(), nullable=True),
        sa.Column("stack_deg", sa.Double(), nullable=True),
        sa.Column("steady", sa.Integer(), nullable=True),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strides")),
    )
    with op.batch_alter_table("strides", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_strides_session_part_id"), ["session", "part", "id"], unique=False)

    op.create_table(
        "targets",
        sa.Column("runner_id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("overlay", sa.Text(), nullable=False),
        sa.Column("set_by", sa.Text(), nullable=False),
        sa.Column("set_epoch", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["runner_id"], ["runners.id"], name=op.f("fk_targets_runner_id_runners")),
        sa.PrimaryKeyConstraint("runner_id", "version", name=op.f("pk_targets")),
    )
    op.create_table(
        "tokens",
        sa.Column("runner_id", sa.Text(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("issued_epoch", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["runner_id"], ["runners.id"], name=op.f("fk_tokens_runner_id_runners")),
        sa.PrimaryKeyConstraint("runner_id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("sha256", name=op.f("uq_tokens_sha256")),
    )
    op.create_table(
        "uploads",
        sa.Column("session", sa.Text(), nullable=False),
        sa.Column("runner_id", sa.Text(), nullable=False),
        sa.Column("manifest", sa.Text(), nullable=True),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("updated_epoch", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["runner_id"], ["runners.id"], name=op.f("fk_uploads_runner_id_runners")),
        sa.PrimaryKeyConstraint("session", name=op.f("pk_uploads")),
    )
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_uploads_runner_id"), ["runner_id"], unique=False)

    op.create_table(
        "users",
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("runner_id", sa.Text(), nullable=True),
        sa.Column("created_epoch", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["runner_id"], ["runners.id"], name=op.f("fk_users_runner_id_runners")),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_users")),
    )
    op.create_table(
        "squads",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("coach", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["coach"], ["users.username"], name=op.f("fk_squads_coach_users")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_squads")),
    )
    op.create_table(
        "squad_members",
        sa.Column("squad", sa.Text(), nullable=False),
        sa.Column("runner_id", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["runner_id"], ["runners.id"], name=op.f("fk_squad_members_runner_id_runners")),
        sa.ForeignKeyConstraint(["squad"], ["squads.name"], name=op.f("fk_squad_members_squad_squads")),
        sa.PrimaryKeyConstraint("squad", "runner_id", name=op.f("pk_squad_members")),
    )


def downgrade() -> None:
    op.drop_table("squad_members")
    op.drop_table("squads")
    op.drop_table("users")
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_uploads_runner_id"))

    op.drop_table("uploads")
    op.drop_table("tokens")
    op.drop_table("targets")
    with op.batch_alter_table("strides", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_strides_session_part_id"))

    op.drop_table("strides")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessions_runner_started_epoch"))

    op.drop_table("sessions")
    op.drop_table("runners")
    with op.batch_alter_table("raw_chunks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_raw_chunks_session_t0"))
        batch_op.drop_index(batch_op.f("ix_raw_chunks_session_part"))

    op.drop_table("raw_chunks")
    op.drop_table("parts")
    with op.batch_alter_table("headlines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_headlines_runner_id_started_epoch"))

    op.drop_table("headlines")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_session_part_id"))

    op.drop_table("events")
    with op.batch_alter_table("coach_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_coach_notes_runner_id_id"))

    op.drop_table("coach_notes")
    op.drop_table("alerts")
