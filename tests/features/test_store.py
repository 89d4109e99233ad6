"""The latest-features store: newest row per customer, and a replaced file is read at once."""

import threading

import numpy as np
import pandas as pd
import pytest

from riskcast.errors import InputError, StoreUnavailableError
from riskcast.features.store import FeatureStore, write_store


def _features(as_of: str, value: float, extra: bool = False) -> pd.DataFrame:
    df = pd.DataFrame({"customer_id": ["C1", "C2"], "as_of": pd.Timestamp(as_of),
                       "dbt_mean_3m": [value, np.nan]})
    if extra:
        df["amount_12m"] = [1.0, 2.0]
    return df


def test_the_newest_row_per_customer_is_kept(tmp_path):
    both = pd.concat([_features("2024-04-01", 9.0), _features("2024-01-01", 1.0)])
    store = FeatureStore(write_store(both, tmp_path / "s.sqlite", "v1"))
    row = store.get("C1")
    assert row["as_of"] == "2024-04-01" and row["dbt_mean_3m"] == 9.0 and row["registry_version"] == "v1"
    assert np.isnan(store.get("C2")["dbt_mean_3m"])
    assert store.get("nobody") is None and len(store) == 2


def test_a_store_replaced_under_a_reader_is_read_on_the_next_lookup(tmp_path):
    path = tmp_path / "s.sqlite"
    store = FeatureStore(write_store(_features("2024-01-01", 1.0), path, "v1"))
    assert store.get("C1")["dbt_mean_3m"] == 1.0
    write_store(_features("2024-04-01", 5.0, extra=True), path, "v2")
    row = store.get("C1")
    assert row["dbt_mean_3m"] == 5.0 and row["amount_12m"] == 1.0  # the new file's columns too
    assert store.registry_version_ == "v2" and "amount_12m" in store.columns_


def test_each_thread_reads_through_its_own_connection(tmp_path):
    store = FeatureStore(write_store(_features("2024-01-01", 3.0), tmp_path / "s.sqlite", "v1"))
    got: list[float] = []
    threads = [threading.Thread(target=lambda: got.extend(store.get("C1")["dbt_mean_3m"] for _ in range(200)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [3.0] * 800


def test_a_missing_or_vanished_store_is_named(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        FeatureStore(tmp_path / "none.sqlite")
    path = write_store(_features("2024-01-01", 1.0), tmp_path / "s.sqlite", "v1")
    store = FeatureStore(path)
    path.unlink()
    with pytest.raises(StoreUnavailableError, match="missing"):
        store.get("C1")


def test_a_store_written_a_column_per_value_is_still_read(tmp_path):
    # the layout before the numbers were packed: a work directory keeps answering until the
    # next rescore writes the store again
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE latest_features (customer_id TEXT, as_of TEXT, dbt_mean_3m REAL, registry_version TEXT)")
        con.execute("INSERT INTO latest_features VALUES ('C1', '2024-01-01', NULL, 'v0')")
    con.close()
    store = FeatureStore(path)
    row = store.get("C1")
    assert row["as_of"] == "2024-01-01" and np.isnan(row["dbt_mean_3m"]) and store.registry_version_ == "v0"
    write_store(_features("2024-04-01", 5.0), path, "v1")
    assert store.get("C1")["dbt_mean_3m"] == 5.0 and store.registry_version_ == "v1"


def test_a_file_that_is_no_store_is_named(tmp_path):
    path = tmp_path / "other.sqlite"
    import sqlite3

    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE something (x)")
    con.close()
    with pytest.raises(InputError, match="cannot be read"):
        FeatureStore(path)


def test_the_store_records_its_as_of_date_and_the_writers_meta(tmp_path):
    both = pd.concat([_features("2024-04-01", 9.0), _features("2024-01-01", 1.0)])
    store = FeatureStore(write_store(both, tmp_path / "s.sqlite", "v1", meta={"book_limit_total": "1234.5"}))
    assert store.as_of_ == "2024-04-01"  # the newest row's
    assert store.meta_["book_limit_total"] == "1234.5" and store.meta_["registry_version"] == "v1"
    write_store(_features("2024-07-31", 2.0), tmp_path / "s.sqlite", "v1")  # read per file version
    assert store.as_of_ == "2024-07-31" and "book_limit_total" not in store.meta_


@pytest.mark.parametrize("meta, problem", [({"as_of": "2030-01-01"}, "meta.as_of"),
                                           ({"registry_version": "x"}, "meta.registry_version"),
                                           ({"total": 12.0}, "meta.total: must be text")])
def test_meta_may_not_overwrite_the_stores_own_entries(tmp_path, meta, problem):
    with pytest.raises(InputError, match=problem):
        write_store(_features("2024-01-01", 1.0), tmp_path / "s.sqlite", "v1", meta=meta)
    assert not (tmp_path / "s.sqlite").exists()


def test_a_store_written_before_it_recorded_its_date_says_so(tmp_path):
    import sqlite3

    from riskcast.features.store import store_as_of

    path = write_store(pd.concat([_features("2024-04-01", 9.0), _features("2024-01-01", 1.0)]),
                       tmp_path / "s.sqlite", "v1")
    with sqlite3.connect(path) as con:  # as the store was written before this entry existed
        con.execute("DELETE FROM store_meta WHERE key = 'as_of'")
    con.close()
    store = FeatureStore(path)
    assert store.as_of_ is None and store.get("C1")["as_of"] == "2024-04-01"
    assert store_as_of(path) == "2024-04-01"  # a command may read its rows for it
    legacy = tmp_path / "old.sqlite"
    with sqlite3.connect(legacy) as con:
        con.execute("CREATE TABLE latest_features (customer_id TEXT, as_of TEXT, registry_version TEXT)")
        con.execute("INSERT INTO latest_features VALUES ('C1', '2023-12-31', 'v0')")
    con.close()
    assert FeatureStore(legacy).as_of_ is None and store_as_of(legacy) == "2023-12-31"
