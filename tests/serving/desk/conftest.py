"""The desk's fixtures: a database URL for each of SQLite and PostgreSQL, a store on it whose
today the test sets, and its users of every role."""

from __future__ import annotations

import pytest

from riskcast.serving.desk.store import DeskStore

from .helpers import Clock


@pytest.fixture(params=["sqlite", "postgresql"])
def desk_url(request, tmp_path):
    """A fresh desk database: a SQLite file, or a schema of its own on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/desk.sqlite"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def desk(desk_url, clock):
    store = DeskStore(desk_url, clock=clock)
    yield store
    store.close()


@pytest.fixture
def people(desk):
    """One user of each role (two analysts, two managers), signed in: user id -> User."""
    out = {}
    for uid, role in (("ann", "analyst"), ("abe", "analyst"), ("max", "manager"), ("mia", "manager"),
                      ("cora", "credit_committee"), ("vic", "viewer"), ("ada", "admin")):
        key = desk.add_user(uid, uid.title(), role, by="setup")
        out[uid] = desk.authenticate(key)
    return out


@pytest.fixture
def workers(desk_url, clock):
    """Stores of their own on the desk's database, as separate service workers hold."""
    made: list[DeskStore] = []

    def make(n):
        made.extend(DeskStore(desk_url, clock=clock) for _ in range(n))
        return made[-n:]
    yield make
    for store in made:
        store.close()
