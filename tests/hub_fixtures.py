"""The hub's store for tests, on both backends (tests/pg.py runs the PostgreSQL server).

Use from a test module with ``pytest_plugins = ["hub_fixtures"]``; fixtures:

* ``hub_url`` (parametrized ``["sqlite", "postgres"]``): the URL of a fresh, empty hub database: a file in
  ``tmp_path``, or a new database on the session's PostgreSQL server.
* ``hub_store``: a ``HubStore`` opened (migrated) on ``hub_url``; closed at teardown.
* ``two_hubs_pg``: two ``HubStore`` instances (two engines, two connection pools: two hub processes' worth) on
  one fresh PostgreSQL database.
"""

from __future__ import annotations

import pytest

from stackcue.service.hub.store import HubStore

pytest_plugins = ["pg"]


@pytest.fixture(params=["sqlite", "postgres"])
def hub_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.sqlite'}"
    return request.getfixturevalue("pg_server").create_database()


@pytest.fixture
def hub_store(hub_url):
    store = HubStore(hub_url)
    yield store
    store.close()


@pytest.fixture
def two_hubs_pg(pg_server):
    url = pg_server.create_database()
    a, b = HubStore(url), HubStore(url)
    yield a, b
    a.close()
    b.close()
