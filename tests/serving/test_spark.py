"""Rescoring on Spark (local mode) through MLflow's spark_udf gives the local engine's result
for every customer: decisions, reasons, the comparison with the previous run and the summary."""

import json

import pandas as pd

from riskcast.cli import main


def _rescore(demo_workdir, home, out, *extra):
    argv = ["--quiet", "rescore", "--data", str(demo_workdir / "book"), "--as-of", "2025-06-30",
            "--out", str(out), "--workdir", str(home), *extra]
    assert main(argv) == 0
    summary = json.loads(out.with_name(out.stem + ".summary.json").read_text())
    for key in ("output", "rejected_file"):
        summary.pop(key)
    for part, key in (("collections", "worklist_file"), ("collections", "stop_list_file"), ("watchlist", "file"),
                      ("insurance", "file"), ("insurance", "claims_file")):
        assert summary[part].pop(key).startswith(str(out.with_suffix("")))
    return pd.read_parquet(out), pd.read_parquet(out.with_name(out.stem + ".rejected.parquet")), summary


def test_spark_engine_equals_local_engine_for_every_customer(demo_workdir, workdir_copy, tmp_path):
    previous = tmp_path / "previous.parquet"
    main(["--quiet", "rescore", "--data", str(demo_workdir / "book"), "--as-of", "2025-03-31",
          "--out", str(previous), "--workdir", str(workdir_copy)])
    local, local_rej, local_sum = _rescore(demo_workdir, workdir_copy, tmp_path / "local.parquet",
                                           "--previous", str(previous))
    spark, spark_rej, spark_sum = _rescore(demo_workdir, workdir_copy, tmp_path / "spark.parquet",
                                           "--previous", str(previous), "--engine", "spark")
    assert len(local) > 500 and local["customer_id"].is_unique
    # the book has reasons, customers that moved grade, and customers with no previous grade
    assert local["reason_1"].notna().mean() > 0.9 and local["reason_4"].isna().any()
    assert (local["grade_change"].fillna(0) != 0).any() and local["previous_grade"].isna().any()
    pd.testing.assert_frame_equal(spark, local, check_exact=True)
    pd.testing.assert_frame_equal(spark_rej, local_rej)
    # the second run finds the first one's referrals on the desk: it opens no case twice
    assert spark_sum.pop("desk") == {**local_sum.pop("desk"), "on_the_desk_already": local_sum["decisions"]["refer"],
                                     "cases_opened": 0}
    # and it puts the same customers on the watchlist, whose review cases the first run opened (or
    # joined: the previous rescore opened some)
    assert spark_sum["watchlist"].pop("reviews_opened") == 0
    assert 0 < local_sum["watchlist"].pop("reviews_opened") <= local_sum["watchlist"]["customers"]
    assert spark_sum == local_sum
    for part in ("collections", "watchlist", "insurance", "claims"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"spark.{part}.parquet"),
                                      pd.read_parquet(tmp_path / f"local.{part}.parquet"))
    assert not (tmp_path / ".spark.parquet.parts").exists()
