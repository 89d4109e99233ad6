"""A user's own files, renamed and re-laid out, read through a column mapping."""

import pandas as pd
import pytest

from riskcast.data.io import read_tables, write_tables
from riskcast.data.mapping import load_mapping
from riskcast.errors import ConfigError, DataValidationError

LEDGER_NAMES = {"invoice_id": "DocNo", "customer_id": "Account", "issue_date": "DocDate",
                "due_date": "DueDate", "amount": "Amount", "paid_date": "ClearedOn",
                "paid_amount": "Cleared", "disputed": "Dispute"}


@pytest.fixture()
def ledger_book(tmp_path, small_book):
    write_tables(small_book, tmp_path)
    inv = pd.read_parquet(tmp_path / "invoices.parquet").rename(columns=LEDGER_NAMES)
    inv["Extra"] = 1  # a ledger carries more than we need
    inv.to_csv(tmp_path / "ar_ledger.csv", index=False)
    (tmp_path / "invoices.parquet").unlink()
    lines = ["[invoices]", 'file = "ar_ledger.csv"', "[invoices.columns]"]
    lines += [f'{canon} = "{src}"' for canon, src in LEDGER_NAMES.items()]
    (tmp_path / "mapping.toml").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_mapped_ledger_reads_as_the_canonical_table(ledger_book, small_book):
    tables = read_tables(ledger_book, mapping=load_mapping(ledger_book / "mapping.toml"))
    got = tables.invoices[small_book.invoices.columns]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), small_book.invoices.reset_index(drop=True),
                                  check_dtype=False)


def test_cli_takes_the_mapping(ledger_book, tmp_path, capsys):
    from riskcast.cli import main

    out = tmp_path / "f.parquet"
    assert main(["--quiet", "features", "--data", str(ledger_book), "--as-of", "2024-01-01", "--out", str(out),
                 "--mapping", str(ledger_book / "mapping.toml")]) == 0
    assert len(pd.read_parquet(out)) > 0


def test_a_mapped_column_absent_from_the_file_is_named(ledger_book):
    text = (ledger_book / "mapping.toml").read_text().replace('"DueDate"', '"Due"')
    (ledger_book / "mapping.toml").write_text(text)
    with pytest.raises(DataValidationError, match=r"invoices.due_date: mapped from column 'Due', which ar_ledger.csv"):
        read_tables(ledger_book, mapping=load_mapping(ledger_book / "mapping.toml"))


@pytest.mark.parametrize("text, needle", [
    ('[invoices.columns]\nnot_a_column = "X"\n', "not columns of invoices"),
    ('[ledger]\nfile = "x.csv"\n', "ledger"),
    ('[invoices.columns]\ninvoice_id = "A"\ncustomer_id = "A"\n', "mapped more than once"),
])
def test_bad_mappings_are_named(tmp_path, text, needle):
    p = tmp_path / "m.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_mapping(p)


def test_a_missing_mapped_file_is_named(tmp_path, small_book):
    write_tables(small_book, tmp_path)
    p = tmp_path / "m.toml"
    p.write_text('[invoices]\nfile = "nope.csv"\n')
    with pytest.raises(DataValidationError, match="invoices: mapped file .*nope.csv does not exist"):
        read_tables(tmp_path, mapping=load_mapping(p))
