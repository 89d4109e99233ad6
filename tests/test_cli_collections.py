"""`riskcast collections`: the worklist of overdue invoices on a date (the same as the rescore's
on its own date), a step recorded on an invoice and shown on the next worklist, the steps on
record, and what the command refuses."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from riskcast.cli import main
from riskcast.serving.collections import collections_lines

LADDER = ("reminder", "call", "demand", "legal", "agency")
#: the columns a recorded step changes on its invoice's row of the worklist
STEP_COLUMNS = ["step_stage", "step", "step_date", "step_due_now", "last_stage", "last_outcome", "last_by", "last_at",
                "promised_date"]


def _summary(workdir) -> dict:
    return json.loads((workdir / "scored_book.summary.json").read_text())


def _worklist(workdir, out, as_of=None, *extra) -> int:
    as_of = as_of or _summary(workdir)["as_of"]
    argv = ["--quiet", "collections", "--data", str(workdir / "book"), "--as-of", as_of, "--workdir", str(workdir)]
    if out is not None:
        argv += ["--out", str(out)]
    return main([*argv, *extra])


def _record(workdir, *args) -> int:
    return main(["--quiet", "collections", "record", *args, "--workdir", str(workdir)])


def _pick(work: pd.DataFrame, stage: str) -> pd.Series:
    at = work[(work["stage"] == stage) & (work["step_stage"] == stage)]
    assert len(at), f"the demo's worklist has no invoice at the {stage} stage"
    return at.iloc[0]


def test_the_worklist_on_the_rescores_date_is_the_rescores(workdir_copy, tmp_path, capsys):
    summary = _summary(workdir_copy)
    out = tmp_path / "lists" / "worklist.parquet"
    assert _worklist(workdir_copy, out) == 0
    captured = capsys.readouterr()
    printed = captured.out.splitlines()
    stop_path = out.with_name(f"{out.stem}.stop_list.parquet")
    assert out.exists() and stop_path.exists()
    assert stop_path.name == "worklist.stop_list.parquet"

    work = pd.read_parquet(out)
    stops = pd.read_parquet(stop_path)
    pd.testing.assert_frame_equal(work, pd.read_parquet(workdir_copy / "scored_book.collections.parquet"))
    pd.testing.assert_frame_equal(stops, pd.read_parquet(workdir_copy / "scored_book.stop_list.parquet"))
    assert list(work["rank"]) == list(range(1, len(work) + 1))
    assert set(work["stage"]) <= {"", *LADDER}
    assert (work["days_past_due"] > 0).all() and work["last_outcome"].isna().all()

    # the summary printed is the rescore's, and the files are named with their sizes
    col = summary["collections"]
    assert printed[0].startswith(f"collections as of {summary['as_of']}: {col['overdue_invoices']:,} overdue invoices")
    for line in collections_lines(col):
        assert line in printed, line
    assert col["overdue_invoices"] == len(work) and col["stop_list"]["customers"] == len(stops)
    assert printed[-1] == (f"worklist: {out} ({len(work):,} overdue invoices)   stop list: {stop_path} "
                           f"({len(stops):,} customers)")
    due = work[work["step_due_now"]]
    if len(due):
        assert f"the {min(10, len(due))} steps due now that are most at stake:" in printed
        assert str(due.iloc[0]["invoice_id"]) in captured.out
    assert "Traceback" not in captured.err


def test_a_recorded_step_shows_on_the_next_worklist_and_in_the_steps(workdir_copy, tmp_path, capsys):
    as_of = _summary(workdir_copy)["as_of"]
    before_path = tmp_path / "before.parquet"
    assert _worklist(workdir_copy, before_path) == 0
    capsys.readouterr()
    before = pd.read_parquet(before_path)
    at_call = _pick(before, "call")                            # a step answering its current stage
    at_legal = _pick(before, "legal")
    behind = before[(before["stage"] == "agency") & (before["invoice_id"] != at_call["invoice_id"])].iloc[0]

    promised = (pd.Timestamp(as_of) + pd.Timedelta(days=10)).date().isoformat()
    assert _record(workdir_copy, "--customer", str(at_call["customer_id"]), "--invoice", str(at_call["invoice_id"]),
                   "--stage", "call", "--outcome", "promise to pay", "--promised", promised,
                   "--note", "pays on the tenth", "--request-id", "call-1") == 0
    said = capsys.readouterr().out.strip()
    assert said.startswith("step ") and " on record: invoice " in said
    assert str(at_call["invoice_id"]) in said and "call: promise to pay" in said and promised in said
    assert " by cli:" in said
    # retried: the same step, not a second one
    assert _record(workdir_copy, "--customer", str(at_call["customer_id"]), "--invoice", str(at_call["invoice_id"]),
                   "--stage", "call", "--outcome", "promise to pay", "--promised", promised,
                   "--note", "pays on the tenth", "--request-id", "call-1") == 0
    assert capsys.readouterr().out.strip() == said
    # the last stage's step taken on an invoice at it; a step of an earlier stage on another
    assert _record(workdir_copy, "--customer", str(behind["customer_id"]), "--invoice", str(behind["invoice_id"]),
                   "--stage", "agency", "--outcome", "escalated") == 0
    assert _record(workdir_copy, "--customer", str(at_legal["customer_id"]), "--invoice",
                   str(at_legal["invoice_id"]), "--stage", "reminder", "--outcome", "no answer") == 0
    capsys.readouterr()

    # the worklist again, to its default file in the work directory
    assert _worklist(workdir_copy, None) == 0
    printed = capsys.readouterr().out
    assert "with a step on record: 3" in printed
    after_path = workdir_copy / f"collections_{as_of}.parquet"
    assert after_path.exists() and (workdir_copy / f"collections_{as_of}.stop_list.parquet").exists()
    after = pd.read_parquet(after_path)
    assert list(after["invoice_id"]) == list(before["invoice_id"])   # the ranking is the steps' own business

    def row(frame, inv):
        found = frame[frame["invoice_id"] == inv["invoice_id"]]
        assert len(found) == 1
        return found.iloc[0]

    call = row(after, at_call)
    assert call["last_outcome"] == "promise to pay" and call["last_stage"] == "call"
    assert call["last_by"].startswith("cli:") and call["last_at"]
    assert call["promised_date"] == pd.Timestamp(promised)
    assert call["stage"] == "call" and call["step_stage"] == "demand"     # the call is on record: the demand next
    assert call["step"].startswith("formal demand")
    # the demand is due when the invoice reaches it, or the day after the promise if later
    demand_day = at_call["due_date"] + pd.Timedelta(days=31)
    assert call["step_date"] == max(demand_day, pd.Timestamp(promised) + pd.Timedelta(days=1))
    assert not call["step_due_now"]

    last = row(after, behind)
    assert (last["last_stage"], last["last_outcome"]) == ("agency", "escalated")
    assert last["step_stage"] == "" and last["step"] == "the ladder's last step is taken"
    assert pd.isna(last["step_date"]) and not last["step_due_now"]

    legal = row(after, at_legal)                 # a step of an earlier stage leaves the legal step due
    assert (legal["last_stage"], legal["last_outcome"]) == ("reminder", "no answer")
    assert legal["step_stage"] == "legal" and legal["step_date"] == at_legal["step_date"]

    touched = after["invoice_id"].isin([at_call["invoice_id"], behind["invoice_id"], at_legal["invoice_id"]])
    assert touched.sum() == 3
    pd.testing.assert_frame_equal(after[~touched].reset_index(drop=True), before[~touched].reset_index(drop=True))
    others = [c for c in after.columns if c not in STEP_COLUMNS]
    pd.testing.assert_frame_equal(after[others], before[others])

    # the steps on record, all and of one customer
    assert main(["--quiet", "collections", "steps", "--workdir", str(workdir_copy)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 3
    first = listed[0]
    assert str(at_call["customer_id"]) in first and str(at_call["invoice_id"]) in first
    assert "call" in first and "promise to pay" in first and f"promised {promised}" in first
    assert "pays on the tenth" in first and call["last_by"] in first
    assert "agency" in listed[1] and "escalated" in listed[1]
    assert main(["--quiet", "collections", "steps", "--customer", str(at_legal["customer_id"]),
                 "--workdir", str(workdir_copy)]) == 0
    mine = capsys.readouterr().out.splitlines()
    assert mine and all(str(at_legal["customer_id"]) in line for line in mine)
    assert any("no answer" in line for line in mine)
    assert main(["--quiet", "collections", "steps", "--invoice", str(at_call["invoice_id"]),
                 "--workdir", str(workdir_copy)]) == 0
    assert capsys.readouterr().out.splitlines() == [first]


def test_a_scored_book_dated_after_the_worklists_date_is_refused(workdir_copy, tmp_path, capsys):
    as_of = pd.Timestamp(_summary(workdir_copy)["as_of"])
    out = tmp_path / "early.parquet"
    assert _worklist(workdir_copy, out, str((as_of - pd.Timedelta(days=1)).date())) == 2
    err = capsys.readouterr().err
    assert "riskcast collections: error: scored:" in err and "scored as of" in err
    assert str(as_of.date()) in err and "Traceback" not in err
    assert not out.exists() and not out.with_name("early.stop_list.parquet").exists()


@pytest.mark.parametrize("argv,says", [
    (["--data", "{book}"], "--as-of"),
    (["--as-of", "2025-12-31"], "--data"),
    (["--data", "{book}", "--as-of", "2025-11-30,2025-12-31"], "as_of"),
])
def test_the_worklist_needs_its_data_and_one_date(workdir_copy, tmp_path, capsys, argv, says):
    out = tmp_path / "never.parquet"
    argv = [a.replace("{book}", str(workdir_copy / "book")) for a in argv]
    assert main(["--quiet", "collections", *argv, "--workdir", str(workdir_copy), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("riskcast collections: error: ") and says in err and "Traceback" not in err
    assert not out.exists()


def test_a_bad_step_is_refused_naming_the_field_and_nothing_is_recorded(workdir_copy, capsys):
    base = ["--customer", "C000001", "--invoice", "INV00000001", "--stage", "call"]
    assert _record(workdir_copy, *base, "--outcome", "maybe") == 2
    err = capsys.readouterr().err
    assert err.startswith("riskcast collections: error: outcome: 'maybe' is not one of")
    assert "promise to pay" in err and "Traceback" not in err and "internal error" not in err
    for argv, field in ((["--customer", "C1", "--invoice", "I1", "--stage", "court", "--outcome", "done"], "stage"),
                        ([*base, "--outcome", "done", "--promised", "2026-01-15"], "promised_date"),
                        ([*base, "--outcome", "promise to pay", "--promised", "soon"], "promised_date"),
                        (["--invoice", "I1", "--stage", "call", "--outcome", "done"], "customer"),
                        (["--customer", "C1", "--stage", "call", "--outcome", "done"], "invoice"),
                        (["--customer", "C1", "--invoice", "I1", "--stage", "call"], "outcome")):
        assert _record(workdir_copy, *argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(f"riskcast collections: error: {field}:"), (argv, err)
        assert "Traceback" not in err
    assert main(["--quiet", "collections", "steps", "--workdir", str(workdir_copy)]) == 0
    assert capsys.readouterr().out == ""
