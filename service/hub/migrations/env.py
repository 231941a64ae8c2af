"""Alembic's environment for the hub: always online, on the connection ``HubStore`` hands over.

``HubStore`` runs ``alembic.command.upgrade`` with ``config.attributes["connection"]`` set to a connection in an
open transaction (on PostgreSQL holding an advisory lock, so two hub instances starting at once migrate once).
"""

from __future__ import annotations

from alembic import context

from stackcue.service.hub.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only HubStore runs these migrations
    raise RuntimeError("the hub's migrations run through HubStore (service/hub/store.py), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
