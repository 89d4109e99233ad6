"""A firm's own accounts-receivable ledger alone, as its system exports it (its own column
names, M/D/YYYY dates, a dispute flag without a date) with a mapping file: features, training
on the ledger's own default label, rescoring and monitoring, with no other table made by hand;
and a model trained where more was known says it does not fit such data."""

import json

import pandas as pd
import pytest

from riskcast.cli import main


@pytest.fixture(scope="module")
def ledger_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ledger")
    assert main(["--quiet", "generate", "--ledger-only", "--customers", "3000", "--out", str(out)]) == 0
    return out


def _mapping(d):
    return ["--data", str(d), "--mapping", str(d / "mapping.toml")]


def _last_day(ledger_dir) -> str:
    raw = pd.read_csv(ledger_dir / "ar_ledger.csv", dtype=str, keep_default_na=False)
    dates = [pd.to_datetime(raw[c][raw[c] != ""], format="%m/%d/%Y") for c in ("DocDate", "ClearedOn")]
    return max(d.max() for d in dates).strftime("%Y-%m-%d")


def test_the_export_is_a_ledger_alone_in_its_own_layout(ledger_dir):
    assert sorted(p.name for p in ledger_dir.iterdir()) == ["ar_ledger.csv", "mapping.toml"]
    raw = pd.read_csv(ledger_dir / "ar_ledger.csv", dtype=str, keep_default_na=False)
    assert list(raw.columns[:4]) == ["DocNo", "Account", "DocDate", "DueDate"]
    # month first, without leading zeros, and days past 12: only M/D/YYYY reads them all
    assert raw["DocDate"].str.fullmatch(r"\d{1,2}/\d{1,2}/\d{4}").all()
    assert (raw["DocDate"].str.split("/").str[1].astype(int) > 12).any()
    assert set(raw["Dispute"]) == {"Y", "N"}


def test_a_ledger_alone_goes_through_features_train_rescore_and_monitor(ledger_dir, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from riskcast.training import tracking

    home = ["--workdir", str(tmp_path / "home")]
    raw = pd.read_csv(ledger_dir / "ar_ledger.csv", dtype=str, keep_default_na=False)
    accounts = raw["Account"].nunique()
    last = _last_day(ledger_dir)

    assert main(["features", *_mapping(ledger_dir), "--as-of", last, "--out", str(tmp_path / "f.parquet")]) == 0
    err = capsys.readouterr().err
    assert "not in the data folder: customers, financial_statements, industry_signals, defaults" in err
    assert f"{accounts:,} customers derived from the ledger" in err
    assert "dispute(s) without a dispute date: dated on the ledger's last date" in err
    feats = pd.read_parquet(tmp_path / "f.parquet")
    assert set(feats["industry"]) == {"unknown"}
    assert feats["current_ratio"].isna().all() and feats["industry_default_rate_12m"].isna().all()
    assert feats["dbt_mean_12m"].notna().mean() > 0.5

    assert main(["--quiet", "train", *_mapping(ledger_dir), *home]) == 0
    out = capsys.readouterr().out
    assert "alias 'champion'" in out  # the ledger's own label trains a model that passes the gate
    tracking.configure(tmp_path / "home")
    client = MlflowClient()
    run = client.get_run(client.get_model_version_by_alias("riskcast-pd", "champion").run_id)
    assert run.data.tags["label_source"] == "ledger"
    assert "more than 90 days past due" in run.data.tags["label"]
    assert run.data.metrics["test_auc"] > 0.7
    from pathlib import Path

    text = Path(client.download_artifacts(run.info.run_id, "model_card.md", str(tmp_path))).read_text()
    assert "default label: from the ledger: an invoice more than 90 days past due" in text

    scored = tmp_path / "scored.parquet"
    assert main(["rescore", *_mapping(ledger_dir), "--as-of", last, "--out", str(scored), *home]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "scored.summary.json").read_text())
    # every account is counted: scored, or set aside with the reason (in default by the ledger)
    assert summary["customers_in"] == accounts == summary["scored"] + summary["rejected"]
    assert summary["model_fit"]["fits"] is True and "WARNING" not in out
    assert "industry: unknown for 100.0% of the exposure" in out and "largest industry" not in out
    book = pd.read_parquet(scored)
    assert book["model_fit"].isna().all()

    assert main(["--quiet", "monitor", "--current", str(scored), "--out", str(tmp_path / "drift"), *home]) in (0, 1)
    assert (tmp_path / "drift" / "drift_summary.json").exists()


def test_a_model_trained_on_a_full_book_says_it_does_not_fit_a_ledger_alone(ledger_dir, workdir_copy, tmp_path,
                                                                          capsys):
    """The demo's model learned from statements and industry signals too: on the ledger alone
    the summary, stderr, every decision the model made and /readyz say so."""
    from riskcast.serving.runtime import build_core

    scored = tmp_path / "scored.parquet"
    assert main(["rescore", *_mapping(ledger_dir), "--as-of", _last_day(ledger_dir), "--out", str(scored),
                 "--workdir", str(workdir_copy)]) == 0
    captured = capsys.readouterr()
    summary = json.loads((tmp_path / "scored.summary.json").read_text())
    fit = summary["model_fit"]
    assert fit["fits"] is False and fit["lost_importance"] >= 0.25
    lost = {f["feature"] for f in fit["lost"]}
    assert {"current_ratio", "industry_default_rate_12m"} <= lost and "dbt_mean_12m" not in lost
    assert "riskcast: the model does not fit this data" in captured.err
    assert "WARNING: the model does not fit this data" in captured.out
    book = pd.read_parquet(scored)
    by_model = ~book["fallback"]
    assert by_model.any() and book.loc[by_model, "model_fit"].str.startswith("the model does not fit").all()
    assert book.loc[~by_model, "model_fit"].isna().all()
    status = build_core(workdir_copy).store_status()  # what /readyz shows
    assert status["model_fit"]["fits"] is False and "current_ratio" in status["model_fit"]["lost_features"]


def test_configured_so_the_scorecard_decides_a_book_the_model_does_not_fit(ledger_dir, workdir_copy, tmp_path):
    cfg = tmp_path / "fit.toml"
    cfg.write_text((workdir_copy / "riskcast.toml").read_text() + '\n[model_fit]\naction = "scorecard"\n')
    scored = tmp_path / "scored.parquet"
    assert main(["--quiet", "rescore", *_mapping(ledger_dir), "--as-of", _last_day(ledger_dir), "--out", str(scored),
                 "--workdir", str(workdir_copy), "--config", str(cfg)]) == 0
    book = pd.read_parquet(scored)
    assert book["fallback"].all() and (book["model_kind"] == "scorecard").all()
    summary = json.loads((tmp_path / "scored.summary.json").read_text())
    assert summary["fallback_mode"] == "the data lacks what the model relied on"
