"""`riskcast receivables` and the rescore's receivables agree, and add up."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from riskcast.cli import main


def test_the_command_and_the_rescore_give_the_same_receivables(demo_workdir, tmp_path, capsys):
    summary = json.loads((demo_workdir / "scored_book.summary.json").read_text())
    book = summary["receivables"]
    out = tmp_path / "receivables.parquet"
    assert main(["--quiet", "receivables", "--data", str(demo_workdir / "book"), "--as-of", summary["as_of"],
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"receivables as of {summary['as_of']}: {book['open']:,.0f} open")
    assert "count-back" in printed and "collection effectiveness" in printed
    per = pd.read_parquet(out)
    labels = ["current", "1-30", "31-60", "61-90", "90+"]
    np.testing.assert_allclose(per[labels].sum(axis=1), per["open"], atol=0.011)
    assert per["open"].sum() == pytest.approx(book["open"], abs=0.5)
    assert {k: round(float(per[k].sum()), 0) for k in labels} == {k: round(v, 0) for k, v in book["aging"].items()}
    # the open invoices the rescore wrote for the desk are the same receivables
    opened = pd.read_parquet(demo_workdir / "scored_book.open_invoices.parquet")
    assert opened["open_amount"].sum() == pytest.approx(book["open"], abs=0.5)
    assert 0 < book["dso_countback"] < 365 and 0 < book["dso_simple"] < 365 and 0 < book["cei"] <= 1
    assert book["add"] == pytest.approx(book["dso_simple"] * (1 - book["aging_share"]["current"]), abs=0.2)
    assert main(["--quiet", "receivables", "--data", str(demo_workdir / "book"), "--as-of", "2025-01-01,2025-02-01"]) == 2


def test_the_provision_matrix_of_the_command_is_the_rescores(demo_workdir, capsys):
    summary = json.loads((demo_workdir / "scored_book.summary.json").read_text())
    p = summary["receivables"]["provision"]
    assert p["snapshots"] and p["observed_default_rate"] and p["book_pd"] and p["provision"] > 0
    assert sum(b["provision"] for b in p["buckets"].values()) == pytest.approx(p["provision"], abs=0.05)
    assert p["scored_customers"]["provision"] < p["provision"]
    scored = demo_workdir / "scored_book.parquet"
    assert main(["--quiet", "receivables", "--data", str(demo_workdir / "book"), "--as-of", summary["as_of"],
                 "--scored", str(scored)]) == 0
    printed = capsys.readouterr().out
    assert f"expected credit loss, provision matrix: {p['provision']:,.0f}" in printed
    assert f"x{p['adjustment']:.2f} for the book's PD" in printed
    # without PDs the historical rates stand; PDs scored after the date were not known on it
    assert main(["--quiet", "receivables", "--data", str(demo_workdir / "book"), "--as-of", summary["as_of"]]) == 0
    assert "no forward adjustment" in capsys.readouterr().out
    assert main(["--quiet", "receivables", "--data", str(demo_workdir / "book"), "--as-of", "2025-01-31",
                 "--scored", str(scored)]) == 2
    assert "scored:" in capsys.readouterr().err
