"""Alembic migrations of the hub's store, run by ``HubStore`` at open (no alembic.ini: ``store.alembic_config``)."""
