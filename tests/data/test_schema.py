import pandas as pd
import pytest

from riskcast.data.io import read_any
from riskcast.data.schema import DEFAULTS, INVOICES, validate_table
from riskcast.errors import DataValidationError, InputError

from conftest import POLISH


def _invoices(**over):
    df = pd.DataFrame({
        "invoice_id": ["I1", "I2"], "customer_id": ["C1", "C1"],
        "issue_date": ["2024-01-01", "2024-02-01"], "due_date": ["2024-01-31", "2024-03-02"],
        "amount": [100.0, 200.0], "paid_date": ["2024-02-05", None], "paid_amount": [100.0, None],
        "disputed": [False, True],
    })
    for k, v in over.items():
        df[k] = v
    return df


def test_valid_table_is_typed():
    out = validate_table(INVOICES, _invoices())
    assert str(out["issue_date"].dtype).startswith("datetime64")
    assert out["paid_date"].isna().tolist() == [False, True]
    assert out["disputed"].dtype == bool


@pytest.mark.parametrize("change, column, problem", [
    ({"amount": ["x", 1.0]}, "amount", "not numbers"),
    ({"amount": [-5.0, 1.0]}, "amount", "below the minimum"),
    ({"issue_date": ["2024-13-45", "2024-01-01"]}, "issue_date", "not dates"),
    ({"invoice_id": ["I1", "I1"]}, "invoice_id", "duplicate"),
    ({"due_date": ["2023-12-01", "2024-03-02"]}, "due_date", "fall due before"),
    ({"customer_id": ["C1", None]}, "customer_id", "empty"),
    ({"disputed": ["maybe", "no"]}, "disputed", "not booleans"),
])
def test_bad_values_name_table_column_problem_and_rows(change, column, problem):
    with pytest.raises(DataValidationError) as e:
        validate_table(INVOICES, _invoices(**change))
    msg = str(e.value)
    assert msg.startswith("invoices.")
    assert column in msg and problem in msg
    assert "row" in msg


def test_rows_are_listed_and_counted():
    df = pd.concat([_invoices()] * 5, ignore_index=True)
    df["invoice_id"] = [f"I{i}" for i in range(len(df))]
    df.loc[[1, 3, 5, 7, 8, 9], "amount"] = -1.0
    with pytest.raises(DataValidationError, match=r"rows 1, 3, 5, 7, 8 \(and 1 more\)"):
        validate_table(INVOICES, df)


def test_missing_column_is_named():
    with pytest.raises(DataValidationError, match="invoices.amount: required column is missing"):
        validate_table(INVOICES, _invoices().drop(columns=["amount"]))


def test_category_outside_the_allowed_values():
    df = pd.DataFrame({"customer_id": ["C1"], "default_date": ["2024-01-01"], "kind": ["fraud"]})
    with pytest.raises(DataValidationError, match="defaults.kind"):
        validate_table(DEFAULTS, df)


def test_csv_question_marks_are_missing(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b\n1,?\n2,\n")
    df = read_any(p)
    assert df["b"].isna().all() and df["a"].tolist() == [1, 2]


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_any(tmp_path / "nope.csv")
    p = tmp_path / "t.xlsx"
    p.write_text("x")
    with pytest.raises(InputError, match="unsupported format"):
        read_any(p)


@pytest.mark.skipif(not (POLISH / "1year.arff").exists(), reason="shared benchmark data not present")
def test_polish_arff_loads_with_missing_values():
    df = read_any(POLISH / "1year.arff")
    assert len(df) == 7027
    assert df["class"].astype(int).sum() == 271
    assert df["Attr1"].dtype.kind == "f"
    assert df.drop(columns="class").isna().any().any()  # '?' became NaN


@pytest.mark.parametrize("ids, dup", [
    (["I1", "I2", "I3", "I4"], 0),          # ascending: proven unique in one pass
    (["I4", "I2", "I3", "I1"], 0),          # any order: hashed
    (["I1", "I2", "I2", "I3"], 1),          # ascending but repeated
    (["I3", "I1", "I2", "I1"], 1),
])
def test_invoice_ids_are_unique_in_any_order(ids, dup):
    inv = pd.concat([_invoices(), _invoices()], ignore_index=True).assign(invoice_id=ids)
    if dup:
        with pytest.raises(DataValidationError, match="invoice_id.*1 duplicate key"):
            validate_table(INVOICES, inv)
    else:
        assert validate_table(INVOICES, inv)["invoice_id"].tolist() == ids


def test_a_users_parquet_ledger_is_read_compactly_and_checked(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from riskcast.data.io import read_tables
    from riskcast.data.synthetic import generate_book
    from riskcast.config import GeneratorConfig

    book = generate_book(GeneratorConfig(customers=60, years=3, seed=2))
    for name, df in book.items():
        # written by another tool: plain Arrow strings, no pandas metadata
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None),
                       tmp_path / f"{name}.parquet")
    tables = read_tables(tmp_path)
    inv = tables.invoices
    assert inv["invoice_id"].dtype == "string[pyarrow]" and inv["customer_id"].dtype == "string[pyarrow]"
    pd.testing.assert_frame_equal(inv, book.invoices)
    assert tables.customers["customer_id"].dtype == object

    twice = pd.concat([book.invoices, book.invoices.iloc[[5]]], ignore_index=True)
    pq.write_table(pa.Table.from_pandas(twice, preserve_index=False), tmp_path / "invoices.parquet")
    with pytest.raises(DataValidationError, match=r"invoices\.invoice_id.*duplicate.*row"):
        read_tables(tmp_path)
