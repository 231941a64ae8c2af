"""The coach's hub: every runner's synced sessions in one store (SQLite for one coach, PostgreSQL for a club).

``store.HubStore`` is the one data-access layer (SQLAlchemy Core + Alembic, docs/hub.md); ``book.HubBook`` reads
it through the logbook's own row checks, so the report on the hub is the report on the Pi.
"""
