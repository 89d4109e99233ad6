"""The latest-features store: newest row per customer, and a replaced file is read at once."""

import threading

import numpy as np
import pandas as pd
import pytest

from riskcast.errors import InputError
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
    with pytest.raises(InputError, match="has gone"):
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
