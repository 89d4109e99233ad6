"""The order-entry store's faults are the service's, not the caller's: while the store is missing
or cannot be read every order is refused with 503 (who is in the book cannot be told, so neither
can what a request may supply), no answer names the file, and once the file is back the next
order is decided by the same core, without a restart."""

import math
import os
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest

from riskcast.errors import InputError, StoreUnavailableError
from riskcast.features.store import FeatureStore, store_as_of, write_store
from riskcast.serving.core import Order
from riskcast.serving.runtime import build_core


def _book(n: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({"customer_id": [f"C{i:05d}" for i in range(n)], "as_of": pd.Timestamp("2024-01-31"),
                         "industry": rng.choice(["retail", "steel"], n),
                         **{f"f{j}": rng.normal(size=n) for j in range(40)}})


def _written_later(path) -> None:
    """Move the file's modification time on by a second: a real rewrite comes later than the
    write before it, but two writes in a test may share one tick of the file system's clock."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def _reads(store: FeatureStore):
    return {"get": lambda: store.get("C00001"), "as_of_": lambda: store.as_of_, "meta_": lambda: store.meta_,
            "registry_version_": lambda: store.registry_version_, "columns_": lambda: store.columns_,
            "len": lambda: len(store)}


def _unavailable(read, problem: str, *paths) -> StoreUnavailableError:
    with pytest.raises(StoreUnavailableError) as caught:
        read()
    exc = caught.value
    text = str(exc)
    assert problem in text and text.startswith("order-entry store: ") and "\n" not in text
    assert exc.http_status == 503 and exc.field == "store" and not isinstance(exc, InputError)
    for p in paths:
        assert str(p) not in text
    assert "/" not in text and ".sqlite" not in text
    return exc


# -- the store ------------------------------------------------------------------------------

def test_a_store_missing_at_start_is_read_once_it_is_written(tmp_path):
    path = tmp_path / "s.sqlite"
    store = FeatureStore(path, must_exist=False)  # the service starts without it
    for name, read in _reads(store).items():
        _unavailable(read, "missing", path)
    write_store(_book(), path, "v1")
    assert store.get("C00001")["f3"] == _book().loc[1, "f3"] and len(store) == 2000
    assert store.as_of_ == "2024-01-31" and store.registry_version_ == "v1"
    path.unlink()  # gone while serving: the connection still open on it answers nothing
    _unavailable(lambda: store.get("C00001"), "missing", path)
    write_store(_book(10), path, "v2")
    assert store.get("C00001") is not None and store.get("C00011") is None and store.registry_version_ == "v2"


def test_commands_still_refuse_a_missing_or_unreadable_store_as_the_callers_mistake(tmp_path):
    with pytest.raises(InputError, match="does not exist") as missing:
        FeatureStore(tmp_path / "none.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(os.urandom(5000))
    with pytest.raises(InputError, match="cannot be read") as unreadable:
        FeatureStore(junk)
    with pytest.raises(InputError, match="cannot be read"):
        store_as_of(junk)
    for caught in (missing, unreadable):
        assert str(tmp_path) not in str(caught.value) and caught.value.field == "store"


def test_a_corrupt_store_is_unavailable_until_a_good_one_replaces_it(tmp_path):
    path = tmp_path / "s.sqlite"
    path.write_bytes(os.urandom(20_000))
    store = FeatureStore(path, must_exist=False)
    for _ in range(2):  # the second read of the same file says the same
        for read in _reads(store).values():
            _unavailable(read, "cannot be read (not a store or damaged)", path)
    write_store(_book(), path, "v1")  # a rescore renames its store into place
    assert store.get("C01999")["customer_id"] == "C01999" and len(store) == 2000


@pytest.mark.parametrize("damage", ["random bytes", "truncated", "emptied"])
def test_a_store_damaged_in_place_is_noticed_and_so_is_its_repair(tmp_path, damage):
    path = write_store(_book(), tmp_path / "s.sqlite", "v1")
    good = path.read_bytes()
    store = FeatureStore(path, must_exist=False)
    before = store.get("C01500")
    inode = os.stat(path).st_ino
    with open(path, "r+b") as fh:  # the same file, rewritten: only its size and time tell
        fh.truncate(0 if damage == "emptied" else len(good) // 2)
        if damage == "random bytes":
            fh.seek(0)
            fh.write(np.random.default_rng(1).bytes(len(good) // 3))
    assert os.stat(path).st_ino == inode
    _unavailable(lambda: store.get("C01500"), "cannot be read", path)
    _unavailable(lambda: store.as_of_, "cannot be read", path)
    with open(path, "r+b") as fh:  # put back byte for byte, still the same file
        fh.write(good)
    assert os.stat(path).st_ino == inode
    assert store.get("C01500") == before and store.as_of_ == "2024-01-31"


def test_a_damaged_page_fails_a_lookup_only_with_store_unavailable(tmp_path):
    path = write_store(_book(), tmp_path / "s.sqlite", "v1")
    good = path.read_bytes()
    store = FeatureStore(path, must_exist=False)
    ids = [f"C{i:05d}" for i in range(2000)]
    rows = {c: store.get(c) for c in ids}
    with open(path, "r+b") as fh:  # rows' pages damaged, the meta intact: the error comes mid-query
        fh.seek(len(good) // 2)
        fh.write(np.random.default_rng(2).bytes(16_384))
    _written_later(path)
    refused = 0
    for c in ids:
        try:
            assert store.get(c) is not None
        except StoreUnavailableError as exc:  # anything else fails the test
            assert "cannot be read" in str(exc)
            refused += 1
    assert refused > 0 and store.as_of_ == "2024-01-31"
    path.write_bytes(good)
    _written_later(path)
    assert all(store.get(c) == rows[c] for c in ids)


def test_a_store_whose_meta_lacks_its_columns_says_it_was_built_for_another_layout(tmp_path):
    path = write_store(_book(10), tmp_path / "s.sqlite", "v1")
    with sqlite3.connect(path) as con:
        con.execute("DELETE FROM store_meta WHERE key = 'texts'")
    con.close()
    _unavailable(lambda: FeatureStore(path, must_exist=False).get("C00001"), "built for another layout", path)
    with pytest.raises(InputError, match="built for another layout"):
        FeatureStore(path)


# -- the service's core ---------------------------------------------------------------------

def _new_customer_features(core, row: dict) -> dict[str, float]:
    names = set(core.input_ranges_)
    return {k: v for k, v in row.items() if k in names and isinstance(v, float) and not math.isnan(v)}


def _refused(core, orders, home) -> None:
    """Every order, alone or in a batch, is refused as the service's fault, without the path."""
    for order in orders:
        exc = _unavailable(lambda: core.score_order(order), "order-entry store: ", home)
        assert exc.http_status == 503
    _unavailable(lambda: core.score_orders(orders, each=True), "order-entry store: ", home)
    status = core.store_status()
    assert status["available"] is False and status["as_of"] is None and "refused" in status["note"]
    assert str(home) not in status["note"] and "/" not in status["note"]


def _decision(d: dict) -> tuple:
    return d["decision"], d["pd_12m"], d["credit_limit"], d["model"]["kind"], d["store_as_of"]


def test_without_its_store_the_service_starts_refuses_every_order_and_decides_once_it_is_back(workdir_copy, tmp_path):
    store = workdir_copy / "features.sqlite"
    saved = tmp_path / "saved.sqlite"
    shutil.move(store, saved)
    core = build_core(workdir_copy, audit=True)  # starts: no store, no error
    book = FeatureStore(saved)
    ids = pd.read_parquet(workdir_copy / "scored_book.parquet")["customer_id"].astype(str).tolist()
    customer = ids[len(ids) // 2]
    feats = _new_customer_features(core, book.get(ids[1]))
    orders = [Order(customer, 1000.0, 30, request_id="missing-1"),
              Order("NEW-FAULT-1", 1000.0, 30, feats, request_id="missing-2")]
    _refused(core, orders, workdir_copy)
    assert "missing" in core.store_status()["note"]
    assert core.audit.records(["missing-1", "missing-2"]) == []  # nothing decided, nothing on record

    shutil.copy(saved, store)  # put back: the same core reads it on the next order
    d = core.score_order(orders[0])
    assert d["store_as_of"] == book.as_of_ is not None and d["pd_12m"] is not None
    new = core.score_order(orders[1])
    assert new["store_as_of"] is None and new["pd_12m"] is not None
    status = core.store_status()
    assert status["available"] is True and status["as_of"] == book.as_of_ and status["matches_model"] is True
    assert [r["request_id"] for r in core.audit.records(["missing-1", "missing-2"])] == ["missing-1", "missing-2"]


@pytest.mark.parametrize("damage", ["random bytes", "truncated"])
def test_a_store_damaged_while_serving_refuses_orders_until_it_is_restored(workdir_copy, tmp_path, damage):
    store = workdir_copy / "features.sqlite"
    good = store.read_bytes()
    core = build_core(workdir_copy, audit=True)
    ids = pd.read_parquet(workdir_copy / "scored_book.parquet")["customer_id"].astype(str).tolist()
    customer = ids[len(ids) // 3]
    feats = _new_customer_features(core, core.store.get(ids[2]))
    before = core.score_order(Order(customer, 2500.0, 60))
    fresh = core.score_order(Order("NEW-FAULT-2", 2500.0, 60, feats))
    with open(store, "r+b") as fh:  # damaged in place, while the core holds it open
        fh.truncate(len(good) // 2)
        if damage == "random bytes":
            fh.seek(0)
            fh.write(np.random.default_rng(3).bytes(len(good) // 4))
    _refused(core, [Order(customer, 2500.0, 60), Order("NEW-FAULT-2", 2500.0, 60, feats)], workdir_copy)
    assert "cannot be read" in core.store_status()["note"]

    if damage == "random bytes":  # a rescore's store renamed into place
        aside = tmp_path / "rescored.sqlite"
        aside.write_bytes(good)
        os.replace(aside, store)
    else:  # repaired in place
        with open(store, "r+b") as fh:
            fh.write(good)
    assert _decision(core.score_order(Order(customer, 2500.0, 60))) == _decision(before)
    assert _decision(core.score_order(Order("NEW-FAULT-2", 2500.0, 60, feats))) == _decision(fresh)
    assert core.store_status()["available"] is True


def test_a_corrupt_store_at_start_up_is_no_crash(workdir_copy):
    (workdir_copy / "features.sqlite").write_bytes(b"SQLite format 3\x00" + os.urandom(8000))
    core = build_core(workdir_copy, audit=True)
    assert core.model is not None and core.store_status()["available"] is False
    _unavailable(lambda: core.score_order(Order("ANY", 100.0)), "cannot be read", workdir_copy)


def test_a_core_without_a_store_keeps_deciding_customers_who_bring_their_features(core):
    from riskcast.serving.core import ScoringCore

    bare = ScoringCore(core.cfg, core.model, None)
    ids = pd.read_parquet(core.store.path.parent / "scored_book.parquet")["customer_id"].astype(str).tolist()
    feats = _new_customer_features(core, core.store.get(ids[0]))
    assert bare.score_order(Order("NEW-FAULT-3", 1000.0, 30, feats))["pd_12m"] is not None
    with pytest.raises(InputError, match="not in the book") as caught:
        bare.score_order(Order(ids[0], 1000.0))
    assert caught.value.http_status == 404
    assert bare.store_status()["available"] is False and "only customers supplying" in bare.store_status()["note"]
