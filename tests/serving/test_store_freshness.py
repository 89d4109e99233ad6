"""The order-entry store is never silently replaced by an older rescore, never fed to a model of
another feature registry, and every answer says how old the features it used are."""

import math
import os

import pandas as pd
import pytest

from riskcast.cli import main
from riskcast.features.store import FeatureStore, write_store
from riskcast.serving.core import Order, ScoringCore


@pytest.fixture(scope="module")
def customer(demo_workdir):
    scored = pd.read_parquet(demo_workdir / "scored_book.parquet")
    return str(scored.sort_values("pd_12m")["customer_id"].iloc[len(scored) // 2])


def _rescore(home, book, as_of, out, *extra):
    return main(["--quiet", "rescore", "--data", str(book), "--as-of", as_of, "--out", str(out),
                 "--workdir", str(home), *extra])


def test_a_back_dated_rescore_leaves_the_live_store_alone_unless_told(demo_workdir, workdir_copy, tmp_path, capsys):
    store = workdir_copy / "features.sqlite"
    live = FeatureStore(store).as_of_
    assert live is not None and live > "2025-06-30"
    before = store.read_bytes()
    out = tmp_path / "back.parquet"
    assert _rescore(workdir_copy, demo_workdir / "book", "2025-06-30", out) == 0
    printed = capsys.readouterr()
    assert store.read_bytes() == before  # byte for byte
    assert out.exists() and len(pd.read_parquet(out)) > 0  # the scored files are written either way
    for stream in (printed.out, printed.err):
        line = next(x for x in stream.splitlines() if "left as it is" in x)
        assert live in line and "2025-06-30" in line and "--replace-store" in line
    assert "(unchanged)" in printed.out

    assert _rescore(workdir_copy, demo_workdir / "book", "2025-06-30", tmp_path / "forced.parquet",
                    "--replace-store") == 0
    assert "--replace-store" in capsys.readouterr().err
    assert FeatureStore(store).as_of_ == "2025-06-30"

    # a rescore at a later date replaces it by itself, and so does one at the same date
    assert _rescore(workdir_copy, demo_workdir / "book", live, tmp_path / "later.parquet") == 0
    assert FeatureStore(store).as_of_ == live and "left as it is" not in capsys.readouterr().out
    inode = os.stat(store).st_ino, os.stat(store).st_mtime_ns
    assert _rescore(workdir_copy, demo_workdir / "book", live, tmp_path / "same.parquet") == 0
    assert (os.stat(store).st_ino, os.stat(store).st_mtime_ns) != inode
    assert FeatureStore(store).as_of_ == live


def test_the_rule_on_stores_that_cannot_tell_their_date(tmp_path):
    import sqlite3

    from riskcast.serving.rescore_job import store_rule as _store_rule

    date = pd.Timestamp("2025-01-31")
    assert _store_rule(tmp_path / "none.sqlite", date, False) == (True, None)
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"not a database")
    replace, note = _store_rule(broken, date, False)
    assert replace and "cannot be read" in note
    undated = tmp_path / "undated.sqlite"
    with sqlite3.connect(undated) as con:  # the oldest layout, rows without a date
        con.execute("CREATE TABLE latest_features (customer_id TEXT, registry_version TEXT)")
        con.execute("INSERT INTO latest_features VALUES ('C1', 'v0')")
    con.close()
    replace, note = _store_rule(undated, date, False)
    assert replace and "does not record its date" in note


def _book_rows(core, ids) -> pd.DataFrame:
    rows = [core.store.get(c) for c in ids]
    return pd.DataFrame(rows).drop(columns=["registry_version"])


def test_a_store_of_another_registry_version_is_refused_for_the_scorecard(core, customer, tmp_path):
    ids = [customer]
    own = ScoringCore(core.cfg, core.model, FeatureStore(write_store(_book_rows(core, ids), tmp_path / "own.sqlite",
                                                                     core.registry.version)))
    good = own.score_order(Order(customer, 25000.0, 60))
    assert good["fallback"] is False and good["model"]["kind"] == "lightgbm"

    path = write_store(_book_rows(core, ids), tmp_path / "other.sqlite", "0123456789ab")
    other = ScoringCore(core.cfg, core.model, FeatureStore(path))
    d = other.score_order(Order(customer, 25000.0, 60))
    assert d["fallback"] is True and d["model"]["kind"] == "scorecard"
    assert "feature registry 0123456789ab" in d["fallback_reason"] and core.registry.version in d["fallback_reason"]
    assert str(tmp_path) not in d["fallback_reason"] and "/" not in d["fallback_reason"]
    assert d["decision"] == "refer" and d["pd_12m"] is not None
    assert d["store_as_of"] == good["store_as_of"] == core.store.get(customer)["as_of"]
    # a book customer supplying what the book lacks is still read from the store: still refused
    row = core.store.get(customer)
    lacking = [n for n in core.registry.names if isinstance(row.get(n), float) and math.isnan(row[n])]
    if lacking:
        lo, hi = core.input_ranges_[lacking[0]]
        value = lo if math.isfinite(lo) else min(0.0, hi)
        assert other.score_order(Order(customer, 25000.0, 60, {lacking[0]: value}))["fallback"] is True

    # a new customer supplying its own features never reads the store: unaffected
    names = set(core.input_ranges_)
    feats = {k: v for k, v in row.items() if k in names and isinstance(v, float) and not math.isnan(v)}
    new = other.score_order(Order("NEW-STORE-1", 25000.0, 60, feats))
    assert new["fallback"] is False and new["model"]["kind"] == "lightgbm" and new["store_as_of"] is None
    assert other.store_status()["matches_model"] is False and own.store_status()["matches_model"] is True


def test_answers_and_readyz_report_the_stores_as_of(service_client, core, customer):
    as_of = core.store.as_of_
    assert as_of is not None
    r = service_client.get("/readyz")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["ready"] is True and body["model"]["version"] == core.model.version
    store = dict(body["store"])
    fit = store.pop("model_fit")  # the book the store was built from holds what the model relied on
    assert store == {"as_of": as_of, "registry_version": core.registry.version,
                     "model_registry_version": core.registry.version, "matches_model": True, "available": True}
    assert fit["fits"] is True and fit["lost_features"] == []
    one = service_client.post("/score", json={"customer_id": customer, "order_amount": 1000})
    assert one.status_code == 200 and one.json()["store_as_of"] == as_of
    many = service_client.post("/score_batch", json={"requests": [
        {"customer_id": customer, "order_amount": 1000},
        {"customer_id": "NEW-STORE-2", "order_amount": 1000, "features": {"dbt_mean_3m": 2.0}}]})
    assert many.status_code == 200, many.text
    assert [a["store_as_of"] for a in many.json()] == [as_of, None]
    doc = service_client.get("/docs.json").json()
    assert doc["components"]["schemas"]["ScoreResponse"]["properties"]["store_as_of"]["description"]
    assert service_client.get("/livez").text == "\n"  # untouched
