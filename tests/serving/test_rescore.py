"""`riskcast rescore`: every customer accounted for, resumable after kill -9, compared with the
previous run."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from riskcast.cli import main


def _run(book, out, home, *extra, config=None):
    argv = ["--quiet", "rescore", "--data", str(book), "--as-of", "2025-06-30", "--out", str(out),
            "--workdir", str(home), *extra]
    if config:
        argv += ["--config", str(config)]
    return main(argv)


@pytest.fixture
def small_chunks(tmp_path):
    cfg = tmp_path / "chunks.toml"
    cfg.write_text("[rescore]\nchunk_size = 25\n")
    return cfg


def test_rows_in_equal_rows_scored_plus_rows_rejected(demo_workdir, workdir_copy, tmp_path, capsys):
    # a copy of the book with two bad master-data records
    book = tmp_path / "book"
    book.mkdir()
    for f in (demo_workdir / "book").iterdir():
        (book / f.name).write_bytes(f.read_bytes())
    customers = pd.read_parquet(book / "customers.parquet")
    customers["industry"] = customers["industry"].astype(str)
    customers.loc[3, "industry"] = "ZZ"
    customers.loc[7, "first_trade_date"] = pd.NaT
    customers.to_parquet(book / "customers.parquet")
    out = tmp_path / "scored.parquet"
    assert _run(book, out, workdir_copy) == 0
    scored = pd.read_parquet(out)
    rejected = pd.read_parquet(tmp_path / "scored.rejected.parquet")
    summary = json.loads((tmp_path / "scored.summary.json").read_text())
    ids = set(customers["customer_id"])
    assert scored["customer_id"].is_unique and rejected["customer_id"].is_unique
    assert set(scored["customer_id"]) | set(rejected["customer_id"]) == ids
    assert not set(scored["customer_id"]) & set(rejected["customer_id"])
    assert summary["customers_in"] == len(customers) == summary["scored"] + summary["rejected"]
    why = dict(zip(rejected["customer_id"], rejected["reason"]))
    assert "ZZ is not a NACE section" in why[customers.loc[3, "customer_id"]]
    assert "first_trade_date" in why[customers.loc[7, "customer_id"]]
    assert any(r.startswith("in default since") for r in why.values())
    assert any(r.startswith("not trading yet") for r in why.values())
    # counted by kind, one kind per cause
    kinds = dict(zip(rejected["customer_id"], rejected["kind"]))
    assert kinds[customers.loc[3, "customer_id"]] == "bad industry code"
    assert kinds[customers.loc[7, "customer_id"]] == "bad first trade date"
    assert summary["rejected_by_reason"] == rejected["kind"].value_counts().to_dict()
    assert set(summary["rejected_by_reason"]) <= {"bad industry code", "bad first trade date", "in default",
                                                  "not trading yet", "no data at all"}
    printed = capsys.readouterr().out
    assert f"customers in {len(customers):,} = scored {len(scored):,} + rejected {len(rejected):,}" in printed
    # the expected loss is PD x 45% x open receivables, summed
    el = float((scored["pd_12m"] * 0.45 * scored["exposure"].clip(lower=0)).sum())
    assert summary["expected_loss"] == pytest.approx(el) and summary["lgd"] == 0.45
    assert len(summary["top_exposures"]) == 10
    assert summary["top_exposures"][0]["exposure"] == pytest.approx(scored["exposure"].max())
    assert 0 < summary["largest_industry"]["share"] <= 1


def test_killed_at_any_moment_and_run_again_it_equals_an_uninterrupted_run(
        demo_workdir, workdir_copy, tmp_path, small_chunks):
    book = demo_workdir / "book"
    clean = tmp_path / "clean.parquet"
    assert _run(book, clean, workdir_copy, config=small_chunks) == 0

    out = tmp_path / "killed" / "scored.parquet"
    parts = out.with_name(f".{out.name}.parts")
    env = dict(os.environ, RISKCAST_HOME=str(workdir_copy))
    cmd = [sys.executable, "-m", "riskcast.cli", "--quiet", "rescore", "--data", str(book), "--as-of", "2025-06-30",
           "--out", str(out), "--workdir", str(workdir_copy), "--config", str(small_chunks)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list(parts.glob("part-*.parquet"))) >= 3:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and len(list(parts.glob("part-*.parquet"))) >= 3

    assert _run(book, out, workdir_copy, config=small_chunks) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(clean))
    pd.testing.assert_frame_equal(pd.read_parquet(out.with_name("scored.rejected.parquet")),
                                  pd.read_parquet(tmp_path / "clean.rejected.parquet"))
    for side in ("open_invoices", "collections", "stop_list", "watchlist", "insurance", "claims"):
        pd.testing.assert_frame_equal(pd.read_parquet(out.with_name(f"scored.{side}.parquet")),
                                      pd.read_parquet(tmp_path / f"clean.{side}.parquet"))
    summary = json.loads(out.with_name("scored.summary.json").read_text())
    assert summary["chunks_resumed"] >= 3 and summary["chunks"] > summary["chunks_resumed"]
    assert not parts.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "scored.claims.parquet", "scored.collections.parquet", "scored.insurance.parquet", "scored.open_invoices.parquet",
        "scored.parquet", "scored.rejected.parquet", "scored.stop_list.parquet", "scored.summary.json",
        "scored.watchlist.parquet"]


def test_leftovers_of_a_run_with_other_arguments_are_not_reused(demo_workdir, workdir_copy, tmp_path, small_chunks):
    book = demo_workdir / "book"
    out = tmp_path / "scored.parquet"
    parts = out.with_name(f".{out.name}.parts")
    parts.mkdir()
    (parts / "manifest.json").write_text(json.dumps({"as_of": "2024-01-01"}))
    pd.DataFrame({"customer_id": ["bogus"]}).to_parquet(parts / "part-000000.parquet")
    assert _run(book, out, workdir_copy, config=small_chunks) == 0
    scored = pd.read_parquet(out)
    assert "bogus" not in set(scored["customer_id"]) and scored["customer_id"].is_unique
    assert json.loads(out.with_name("scored.summary.json").read_text())["chunks_resumed"] == 0


def test_against_the_previous_run_it_prints_the_migration_and_the_expected_loss(
        demo_workdir, workdir_copy, tmp_path, capsys):
    book = demo_workdir / "book"
    before, now = tmp_path / "before.parquet", tmp_path / "now.parquet"
    assert main(["--quiet", "rescore", "--data", str(book), "--as-of", "2025-03-31", "--out", str(before),
                 "--workdir", str(workdir_copy)]) == 0
    capsys.readouterr()
    assert _run(book, now, workdir_copy, "--previous", str(before)) == 0
    printed = capsys.readouterr().out
    assert "migration against the previous run" in printed and "expected loss (PD x LGD 45% x exposure)" in printed
    a, b = pd.read_parquet(before), pd.read_parquet(now)
    summary = json.loads((tmp_path / "now.summary.json").read_text())
    both = b.merge(a[["customer_id", "grade", "exposure", "credit_limit"]], on="customer_id", suffixes=("", "_a"))
    mig = summary["migration"]
    assert mig["customers"] == len(both)
    assert sum(sum(row.values()) for row in mig["counts"].values()) == len(both)
    g = mig["grades"][0]
    assert mig["counts"][g][g] == int(((both["grade"] == g) & (both["grade_a"] == g)).sum())
    # per customer: the previous grade and PD, the change, newly over the limit
    assert (b.set_index("customer_id").loc[both["customer_id"], "previous_grade"].to_numpy()
            == both["grade_a"].to_numpy()).all()
    new_over = (both["exposure"] > both["credit_limit"]) & ~(both["exposure_a"] > both["credit_limit_a"])
    assert int(b["newly_over_limit"].sum()) == summary["newly_over_limit"] >= int(new_over.sum())
    assert summary["new_customers"] == int(b["previous_grade"].isna().sum())
    rank = {x: i for i, x in enumerate(mig["grades"])}
    changes = both["grade"].map(rank) - both["grade_a"].map(rank)
    assert mig["downgrades"] == int((changes > 0).sum()) and mig["upgrades"] == int((changes < 0).sum())
    assert np.isfinite(b["previous_pd_12m"].dropna()).all()
    # both runs on one scale: grade changes are counted, and agree with the migration
    assert mig["compared"] is True and mig["scale_version"] == b["scale_version"].iloc[0] == a["scale_version"].iloc[0]
    change = b.set_index("customer_id").loc[both["customer_id"], "grade_change"]
    assert change.notna().all() and int((change > 0).sum()) == mig["downgrades"]


def test_a_previous_file_without_the_columns_is_a_clear_error(demo_workdir, workdir_copy, tmp_path, capsys):
    bad = tmp_path / "prev.parquet"
    pd.DataFrame({"customer_id": ["a"]}).to_parquet(bad)
    assert _run(demo_workdir / "book", tmp_path / "o.parquet", workdir_copy, "--previous", str(bad)) == 2
    err = capsys.readouterr().err
    assert "previous.pd_12m: column is missing" in err and "Traceback" not in err


def test_in_fallback_mode_the_scorecard_rescores_the_book(demo_workdir, workdir_copy, tmp_path):
    from riskcast.serving.switch import FallbackSwitch

    FallbackSwitch(workdir_copy / "serving" / "fallback.json").set("score PSI 0.41", by="monitoring")
    out = tmp_path / "carded.parquet"
    assert _run(demo_workdir / "book", out, workdir_copy) == 0
    scored = pd.read_parquet(out)
    summary = json.loads((tmp_path / "carded.summary.json").read_text())
    assert scored["fallback"].all() and (scored["model_kind"] == "scorecard").all()
    assert scored["fallback_reason"].str.contains("score PSI 0.41").all()
    assert scored["pd_12m"].between(0, 1).all() and scored["reason_1"].notna().mean() > 0.9
    assert summary["fallback"] == summary["scored"] and "score PSI 0.41" in summary["fallback_mode"]
    # the decision is referred to an analyst while the model is not trusted
    assert set(scored["decision"]) <= {"refer", "decline"}


def test_the_scored_book_records_its_scale_and_the_summary_its_concentration(demo_workdir, workdir_copy, tmp_path,
                                                                             capsys):
    from riskcast.training import tracking

    out = tmp_path / "scored.parquet"
    assert _run(demo_workdir / "book", out, workdir_copy) == 0
    scored = pd.read_parquet(out)
    tracking.configure(workdir_copy)
    bundle = tracking.load_registered("riskcast-pd", "champion").bundle
    assert (scored["scale_version"] == bundle.master_scale.version).all()
    assert (scored["scale_fingerprint"] == bundle.master_scale.fingerprint).all()
    summary = json.loads((tmp_path / "scored.summary.json").read_text())
    assert summary["scale"] == {"version": bundle.master_scale.version, "fingerprint": bundle.master_scale.fingerprint}
    shares = scored["grade"].value_counts(normalize=True)
    c = summary["grade_concentration"]
    assert c["herfindahl"] == pytest.approx(float((shares ** 2).sum()))
    assert c["max_share"] == pytest.approx(shares.max()) and c["max_grade"] == shares.idxmax()
    assert "never split" in capsys.readouterr().out


@pytest.mark.parametrize("previous_scale", ["another version", "none recorded"])
def test_against_a_previous_run_on_another_scale_no_grade_is_compared(demo_workdir, workdir_copy, tmp_path, capsys,
                                                                        previous_scale):
    book = demo_workdir / "book"
    before, now = tmp_path / "before.parquet", tmp_path / "now.parquet"
    assert main(["--quiet", "rescore", "--data", str(book), "--as-of", "2025-03-31", "--out", str(before),
                 "--workdir", str(workdir_copy)]) == 0
    a = pd.read_parquet(before)
    version = a["scale_version"].iloc[0]
    if previous_scale == "another version":
        a["scale_version"] = "0"
        why = f"previous rescore graded on scale 0, this one on {version}: grades not compared"
    else:
        a = a.drop(columns=["scale_version", "scale_fingerprint"])
        why = f"previous rescore graded on no recorded scale (written before scales had versions), this one on " \
              f"scale {version}: grades not compared"
    a.to_parquet(before)
    capsys.readouterr()
    assert _run(book, now, workdir_copy, "--previous", str(before)) == 0
    b = pd.read_parquet(now)
    summary = json.loads((tmp_path / "now.summary.json").read_text())
    assert summary["migration"] == {"compared": False, "reason": why,
                                    "scales": {"reference": ["0"] if previous_scale == "another version" else [],
                                               "current": [version]}}
    assert b["grade_change"].isna().all()
    # the rest of the comparison stands: it does not depend on the scale
    assert b["previous_grade"].notna().sum() > 0 and b["previous_pd_12m"].notna().sum() > 0
    assert summary["new_customers"] == int(b["previous_grade"].isna().sum())
    assert f"migration against the previous run: {why}" in capsys.readouterr().out
