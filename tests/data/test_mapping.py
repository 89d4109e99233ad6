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
    ('[invoices.columns]\nissue_date = { column = "D", constant = "x" }\n', "either column or constant"),
    ('[invoices.columns]\nissue_date = { constant = "2024-01-01", format = "%Y" }\n', "only a source column"),
    ('[invoices.columns]\nissue_date = { column = "D", format = "dd/mm/yyyy" }\n', "no directives"),
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


def _ledger(tmp_path, small_book, dates: str, columns: str) -> tuple:
    """The small book with its invoices as a user's export: dates written as ``dates``
    (a strftime layout), read through a mapping of the lines ``columns``."""
    write_tables(small_book, tmp_path)
    # an export with a dispute flag and no dispute date
    inv = pd.read_parquet(tmp_path / "invoices.parquet").drop(columns="dispute_date").rename(columns=LEDGER_NAMES)
    for c in ("DocDate", "DueDate", "ClearedOn"):
        inv[c] = inv[c].dt.strftime(dates)
    inv.to_csv(tmp_path / "ar_ledger.csv", index=False)
    (tmp_path / "invoices.parquet").unlink()
    given = {line.split("=")[0].strip() for line in columns.splitlines() if line.strip()}
    lines = ["[invoices]", 'file = "ar_ledger.csv"', "[invoices.columns]", columns]
    lines += [f'{canon} = "{src}"' for canon, src in LEDGER_NAMES.items() if canon not in given]
    (tmp_path / "mapping.toml").write_text("\n".join(lines) + "\n")
    return tmp_path, load_mapping(tmp_path / "mapping.toml")


def test_day_first_dates_are_read_with_the_mapped_format(tmp_path, small_book):
    fmt = '{ column = "%s", format = "%%d/%%m/%%Y" }'
    folder, mapping = _ledger(tmp_path, small_book, "%d/%m/%Y", "\n".join(
        [f"issue_date = {fmt % 'DocDate'}", f"due_date = {fmt % 'DueDate'}", f"paid_date = {fmt % 'ClearedOn'}"]))
    got = read_tables(folder, mapping=mapping).invoices
    for c in ("issue_date", "due_date", "paid_date"):
        assert got[c].reset_index(drop=True).equals(small_book.invoices[c].reset_index(drop=True)), c


def test_dates_two_layouts_read_differently_are_refused_naming_the_column_and_a_row(tmp_path, small_book):
    folder, mapping = _ledger(tmp_path, small_book, "%d/%m/%Y", "")
    # a day-first ledger has days past 12 on most columns, so it reads in one layout only; a
    # column whose days are all 12 or less would read as month-first too, without a word
    inv = pd.read_csv(folder / "ar_ledger.csv")
    early = inv["DocDate"].str.slice(0, 2).astype(int) <= 12
    inv.loc[~early, "DocDate"] = "03/04/2024"
    inv.to_csv(folder / "ar_ledger.csv", index=False)
    with pytest.raises(DataValidationError, match=r"invoices.issue_date: dates are not ISO .* '%d/%m/%Y' and as "
                                                  r"'%m/%d/%Y', e.g. '\d\d/\d\d/\d{4}' at row \d+: give the column's format"):
        read_tables(folder, mapping=mapping)


def test_dates_in_one_layout_only_are_read_in_it(tmp_path, small_book):
    folder, mapping = _ledger(tmp_path, small_book, "%d/%m/%Y", "")  # days past 12: day first only
    got = read_tables(folder, mapping=mapping).invoices
    assert got["issue_date"].reset_index(drop=True).equals(small_book.invoices["issue_date"].reset_index(drop=True))


def test_a_value_that_fits_the_mapped_format_nowhere_is_named(tmp_path, small_book):
    folder, mapping = _ledger(tmp_path, small_book, "%Y-%m-%d", 'issue_date = { column = "DocDate", format = "%d/%m/%Y" }')
    with pytest.raises(DataValidationError, match=r"invoices.issue_date: \d+ value\(s\) do not have the mapped format "
                                                  r"'%d/%m/%Y', e.g. '20\d\d-\d\d-\d\d' at row"):
        read_tables(folder, mapping=mapping)


def test_one_source_column_feeds_several_and_a_constant_fills_one(tmp_path, small_book):
    folder, mapping = _ledger(tmp_path, small_book, "%Y-%m-%d",
                              'paid_amount = "Amount"\ndisputed = { constant = false }')
    got = read_tables(folder, mapping=mapping).invoices
    assert got["paid_amount"].equals(got["amount"]) and not got["disputed"].any()
    assert "Amount" not in got.columns and "Dispute" in got.columns  # an unmapped column stays as read
