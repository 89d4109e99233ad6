"""Writing tables: a file appears whole or not at all."""

import pandas as pd
import pytest

from riskcast.data.io import ParquetParts, read_any


def test_parts_become_one_file_with_the_first_parts_types(tmp_path):
    path = tmp_path / "t.parquet"
    with ParquetParts(path) as out:
        out.append(pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]}))
        assert not path.exists()  # nothing visible while it is being written
        out.append(pd.DataFrame({"a": [3], "b": [2]}))  # int column cast to the first part's float
    assert out.rows == 3
    got = read_any(path)
    pd.testing.assert_frame_equal(got, pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.0]}))


def test_a_failure_midway_leaves_no_file_and_no_leftovers(tmp_path):
    path = tmp_path / "t.parquet"
    with pytest.raises(RuntimeError, match="disk gone"):
        with ParquetParts(path) as out:
            out.append(pd.DataFrame({"a": [1, 2]}))
            raise RuntimeError("disk gone")
    assert list(tmp_path.iterdir()) == []


def test_a_failure_keeps_the_previous_file(tmp_path):
    path = tmp_path / "t.parquet"
    with ParquetParts(path) as out:
        out.append(pd.DataFrame({"a": [1]}))
    with pytest.raises(RuntimeError):
        with ParquetParts(path) as out:
            out.append(pd.DataFrame({"a": [7, 8]}))
            raise RuntimeError("stop")
    pd.testing.assert_frame_equal(read_any(path), pd.DataFrame({"a": [1]}))


def test_the_book_as_seen_on_a_date_holds_no_later_fact(small_book):
    as_of = pd.Timestamp("2024-03-15")
    seen = small_book.as_seen_on(as_of)
    inv = seen.invoices
    assert len(inv) and (inv["issue_date"] <= as_of).all()
    assert (inv["paid_date"].dropna() <= as_of).all() and inv["paid_amount"].isna().eq(inv["paid_date"].isna()).all()
    assert (seen.financial_statements["filed_date"] <= as_of).all()
    assert (seen.industry_signals["month"] < pd.Timestamp("2024-03-01")).all()
    assert (seen.defaults["default_date"] <= as_of).all() and (seen.truth["as_of"] <= as_of).all()
    # what was known stays: an invoice paid later is still there, open
    full = small_book.invoices
    paid_later = full[(full["issue_date"] <= as_of) & (full["paid_date"] > as_of)]
    assert len(paid_later) and inv.set_index("invoice_id").loc[paid_later["invoice_id"], "paid_date"].isna().all()
    assert len(inv) == (full["issue_date"] <= as_of).sum()


def test_a_written_file_is_an_ordinary_file_not_a_private_temporary_one(tmp_path):
    import os
    import stat

    from riskcast.data.io import write_parquet

    old = os.umask(0o022)
    try:
        path = write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_read_any_reads_only_the_columns_asked_for_that_the_file_has(tmp_path, suffix):
    df = pd.DataFrame({"customer_id": ["C1", "C2"], "pd_12m": [0.01, 0.2], "reason_1": ["a", "b"]})
    path = tmp_path / f"t{suffix}"
    df.to_parquet(path) if suffix == ".parquet" else df.to_csv(path, index=False)
    got = read_any(path, columns=["customer_id", "pd_12m", "grade"])
    assert list(got.columns) == ["customer_id", "pd_12m"] and got["pd_12m"].tolist() == [0.01, 0.2]
