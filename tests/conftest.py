"""Shared fixtures: one small synthetic book and one trained work directory per test session."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import NamedTuple

import pytest

from riskcast.env import offline_environment

offline_environment()

#: every attempt to reach beyond this machine during the session; the run fails if any
NETWORK_ATTEMPTS: list[str] = []


def _is_local(host: object) -> bool:
    if not isinstance(host, str) or host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _guard(fn):
    def wrapped(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            NETWORK_ATTEMPTS.append(f"connect {address}")
            raise OSError(f"network access to {address} is not allowed in tests")
        return fn(self, address, *args, **kwargs)
    return wrapped


_real_getaddrinfo = socket.getaddrinfo


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host is not None and not _is_local(host if isinstance(host, str) else host.decode()):
        NETWORK_ATTEMPTS.append(f"resolve {host!r}")
        raise socket.gaierror(f"name resolution of {host!r} is not allowed in tests")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guard(socket.socket.connect)
socket.socket.connect_ex = _guard(socket.socket.connect_ex)
socket.getaddrinfo = _guarded_getaddrinfo


def pytest_sessionfinish(session, exitstatus):
    if NETWORK_ATTEMPTS:
        print("\nnetwork access attempted during the tests:\n  " + "\n  ".join(sorted(set(NETWORK_ATTEMPTS))))
        session.exitstatus = 1

def dated_table(seed: int, n: int = 2000):
    """A user's feature table of ``n`` rows: three features (the first drives a 0/1 target ``y``)
    and a date column ``when`` over six quarters, for tests of the table path."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    df["y"] = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * X[:, 0] - 2.5)))).astype(int)
    df["when"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 6, n) * 91, unit="D")
    return df


SHARED = Path(__file__).resolve().parents[2] / "shared"
POLISH = SHARED / "benchmarks" / "polish-bankruptcy"


@pytest.fixture(scope="session")
def small_book():
    from riskcast.config import GeneratorConfig
    from riskcast.data.synthetic import generate_book

    return generate_book(GeneratorConfig(customers=1500, years=6, seed=11))


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory, small_book):
    """A work directory after the whole main job (`riskcast demo`) on a small book."""
    from riskcast.cli import main

    home = tmp_path_factory.mktemp("demo")
    old = os.environ.pop("MLFLOW_TRACKING_URI", None)
    code = main(["--quiet", "demo", "--customers", "1500", "--workdir", str(home)])
    assert code == 0
    if old is not None:
        os.environ["MLFLOW_TRACKING_URI"] = old
    return home


@pytest.fixture(scope="session")
def demo_reference(demo_workdir):
    """The champion's monitoring reference: the scored test window logged with its bundle."""
    from riskcast.config import WorkPaths, load_config
    from riskcast.monitoring.run import champion_reference

    path, _ = champion_reference(load_config(demo_workdir / "riskcast.toml"), WorkPaths(root=demo_workdir))
    return path


@pytest.fixture
def workdir_copy(demo_workdir, tmp_path):
    """A private copy of the demo's work directory, for commands that write into it (the
    order-entry store, the fallback switch) while other tests read the original."""
    import shutil

    return Path(shutil.copytree(demo_workdir, tmp_path / "work"))


@pytest.fixture(scope="session")
def core(demo_workdir):
    from riskcast.serving.runtime import build_core

    return build_core(demo_workdir)


@pytest.fixture(scope="session")
def service_client(demo_workdir):
    """The service in process, started once (its metrics can be registered only once a process)."""
    from starlette.testclient import TestClient

    os.environ["RISKCAST_HOME"] = str(demo_workdir)
    from riskcast.serving.service import RiskcastService

    with TestClient(RiskcastService.to_asgi()) as client:
        yield client
    os.environ.pop("RISKCAST_HOME", None)


PG_SERVER = os.environ.get("RISKCAST_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class PgSchema(NamedTuple):
    url: str      # SQLAlchemy URL whose search path is the schema
    name: str     # the schema
    server: str   # the server's URL, for a connection of one's own


@pytest.fixture
def pg_schema():
    """A schema of its own on the PostgreSQL server, dropped afterwards; the test is skipped
    where no server answers (this project's machines run one at 127.0.0.1:5432)."""
    import uuid

    import sqlalchemy as sa

    pytest.importorskip("psycopg", reason="the PostgreSQL driver (psycopg) is not installed")
    schema = f"riskcast_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = sa.create_engine(PG_SERVER, connect_args={"connect_timeout": 3})
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except sa.exc.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server answers at {PG_SERVER}: {str(exc).splitlines()[0]}")
    yield PgSchema(f"{PG_SERVER}?options=-csearch_path%3D{schema}", schema, PG_SERVER)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


@pytest.fixture
def pg_url(pg_schema):
    """The URL of a schema of its own on the PostgreSQL server (see ``pg_schema``)."""
    return pg_schema.url


@pytest.fixture()
def registry_down(monkeypatch):
    """The tracking server named by the environment does not answer (a closed loopback port)."""
    import mlflow

    before = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    yield
    mlflow.set_tracking_uri(before)  # the process's MLflow, as the tests after this one expect it


class HeldWriter:
    """Another writer of a SQLite database holding its write lock (``BEGIN IMMEDIATE``), as a
    second process would, until ``release()``."""

    def __init__(self, path: Path) -> None:
        import sqlite3

        self.con = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.con.execute("BEGIN IMMEDIATE")
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.con.execute("ROLLBACK")
            self.con.close()


@pytest.fixture
def hold_writer():
    """``hold_writer(path)``: a ``HeldWriter`` on the database at ``path``; whatever the test
    leaves held is released after it."""
    held: list[HeldWriter] = []

    def hold(path: Path) -> HeldWriter:
        held.append(HeldWriter(path))
        return held[-1]
    yield hold
    for writer in held:
        writer.release()


@pytest.fixture(scope="session")
def referable_order(demo_workdir):
    """A demo customer approved within its limit whose order takes it just past the limit
    (within the refer margin), so that order entry refers it, and whose limit an analyst may
    raise by a quarter within authority: (customer_id, recommended limit, exposure, amount)."""
    import pandas as pd

    from riskcast.config import DeskConfig

    scored = pd.read_parquet(demo_workdir / "scored_book.parquet")
    authority = DeskConfig().authority["analyst"]
    ok = scored[(scored["decision_rule"] == "within_limit") & scored["band"].isin(["A", "B", "C"])
                & (scored["credit_limit"] > 2000) & (scored["credit_limit"] * 1.3 < authority)
                & (scored["exposure"] < scored["credit_limit"] * 0.9)].sort_values("credit_limit", ascending=False)
    assert not ok.empty, "the demo book has no customer to refer within an analyst's authority"
    row = ok.iloc[0]
    limit, exposure = float(row["credit_limit"]), float(row["exposure"])
    return str(row["customer_id"]), limit, exposure, round(limit * 1.05 - exposure, 2)
