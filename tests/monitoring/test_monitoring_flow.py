"""`riskcast monitor` end to end: generated books, the backtest, and the switch to the scorecard."""

import json

import pandas as pd
import pytest

from riskcast.cli import main


@pytest.fixture(scope="module")
def books(tmp_path_factory, core):
    """Three books from `riskcast generate`, rescored on their last day by the demo's champion:
    a baseline, another baseline one quarter later, and a recession book one quarter later."""
    from riskcast.data.io import read_tables, write_parquet
    from riskcast.serving.rescore import rescore_book

    root = tmp_path_factory.mktemp("books")
    specs = {"now": ["--seed", "7", "--start", "2022-01-01"],
             "next_quarter": ["--seed", "8", "--start", "2022-04-01"],
             "recession": ["--seed", "8", "--start", "2022-04-01", "--scenario", "recession"]}
    out = {}
    for name, extra in specs.items():
        folder = root / name
        assert main(["--quiet", "generate", "--customers", "4000", "--years", "4", "--out", str(folder), *extra]) == 0
        tables = read_tables(folder, with_truth=False)
        scored, _ = rescore_book(tables, core, tables.data_end)
        out[name] = write_parquet(scored, root / f"{name}.parquet")
    return out


def _monitor(ref, cur, out, home, *extra):
    code = main(["--quiet", "monitor", *(["--reference", str(ref)] if ref else []), "--current", str(cur),
                 "--out", str(out), "--workdir", str(home), *extra])
    return code, json.loads((out / "drift_summary.json").read_text(encoding="utf-8"))


def test_a_quarter_later_is_stable_and_a_recession_alerts_naming_industry_and_payment_features(books, tmp_path):
    from riskcast.features.registry import default_registry

    code, stable = _monitor(books["now"], books["next_quarter"], tmp_path / "q", tmp_path / "home1")
    assert code == 0 and not stable["alert"] and stable["drift_share"] < 0.3
    assert not (tmp_path / "home1" / "serving" / "fallback.json").exists()

    code, hit = _monitor(books["now"], books["recession"], tmp_path / "r", tmp_path / "home2")
    assert code == 1 and hit["alert"] and hit["drift_share"] > 0.3
    registry = default_registry()
    groups = {name: registry[name].group for name in registry.names}
    named = {groups[c] for c in hit["drifted_columns"]}
    assert {"industry", "payment"} <= named
    assert {"industry_default_rate_12m", "dbt_mean_3m"} <= set(hit["drifted_columns"])
    # an ordinary alert reports: the severe thresholds are stricter, order entry keeps the model
    assert hit["drift_share"] < 0.5 and not hit["severe_reasons"]
    assert not (tmp_path / "home2" / "serving" / "fallback.json").exists()

    # a team that wants the switch at 40% of features drifted says so in its configuration
    strict = tmp_path / "strict.toml"
    strict.write_text("[monitoring]\nsevere_drift_share = 0.40\n")
    code, hit = _monitor(books["now"], books["recession"], tmp_path / "r3", tmp_path / "home3", "--config", str(strict))
    assert code == 1 and hit["severe_reasons"] and "features drifted" in hit["severe_reasons"][0]
    switch = json.loads((tmp_path / "home3" / "serving" / "fallback.json").read_text())
    assert switch["active"] is True and "severe monitoring alert" in switch["reason"]
    page = (tmp_path / "r3" / "summary.html").read_text(encoding="utf-8")
    assert "Severe alert" in page and "dbt_mean_3m" in page


def test_the_service_moves_to_the_scorecard_on_a_severe_alert_and_back_when_cleared(
        demo_workdir, demo_reference, service_client, core, tmp_path):
    ref = pd.read_parquet(demo_reference)
    shifted = ref.copy()
    shifted["pd_12m"] = (shifted["pd_12m"] * 4).clip(upper=1)  # the score moved: PSI far above 0.25
    shifted.to_parquet(tmp_path / "shifted.parquet")
    customer = str(pd.read_parquet(demo_workdir / "scored_book.parquet")["customer_id"].iloc[0])
    order = {"customer_id": customer, "order_amount": 1000.0}

    before = service_client.post("/score", json=order).json()
    assert before["fallback"] is False
    try:
        code, payload = _monitor(None, tmp_path / "shifted.parquet", tmp_path / "m", demo_workdir)
        assert code == 1 and payload["severe_reasons"][0].startswith("score PSI")
        during = service_client.post("/score", json=order).json()
        assert during["fallback"] is True and during["model"]["kind"] == "scorecard"
        assert "severe monitoring alert" in during["fallback_reason"] and "score PSI" in during["fallback_reason"]
        # a second severe run does not stack a new order on the one standing
        code, again = _monitor(None, tmp_path / "shifted.parquet", tmp_path / "m2", demo_workdir)
        assert code == 1 and again["fallback_switch"].startswith("already in fallback mode")
    finally:
        assert main(["--quiet", "monitor", "--clear", "--reason", "risk team reviewed the drift report",
                     "--workdir", str(demo_workdir)]) == 0
    after = service_client.post("/score", json=order).json()
    assert after["fallback"] is False and after["pd_12m"] == pytest.approx(before["pd_12m"])
    history = [json.loads(line) for line in
               (demo_workdir / "serving" / "fallback_history.jsonl").read_text().splitlines()]
    assert [h["active"] for h in history[-2:]] == [True, False]
    assert history[-1]["reason"] == "risk team reviewed the drift report" and history[-1]["set_by"]


def test_clearing_needs_a_reason(tmp_path, capsys):
    assert main(["--quiet", "monitor", "--clear", "--workdir", str(tmp_path)]) == 2
    assert "reason" in capsys.readouterr().err


def test_the_backtest_from_the_command_line(demo_workdir, demo_reference, tmp_path):
    """The demo's test window has matured outcomes: backtested against the book's defaults table.
    Halving every PD turns it red, which is severe and sets fallback mode."""
    ref = pd.read_parquet(demo_reference)
    labels = demo_workdir / "book" / "defaults.parquet"
    matured = (ref["as_of"].max() + pd.DateOffset(months=12)).date().isoformat()
    code, payload = _monitor(demo_reference, demo_reference, tmp_path / "a",
                             tmp_path / "home", "--labels", str(labels), "--labels-as-of", matured)
    bt = payload["backtest"]
    assert bt["rows"] == len(ref) and bt["defaults"] == int(ref["default_12m"].sum())
    assert bt["auc"] == pytest.approx(bt["reference_auc"]) and bt["auc_light"] == "green"
    assert code == (1 if bt["light"] == "red" else 0)

    halved = ref.assign(pd_12m=ref["pd_12m"] / 2)
    halved.to_parquet(tmp_path / "halved.parquet")
    code, payload = _monitor(demo_reference, demo_reference, tmp_path / "b",
                             tmp_path / "home", "--labels", str(labels), "--labels-as-of", matured,
                             "--backtest", str(tmp_path / "halved.parquet"))
    assert code == 1 and payload["backtest"]["portfolio_light"] == "red"
    assert any(r.startswith("red backtest") for r in payload["severe_reasons"])
    assert "Backtest on matured outcomes" in (tmp_path / "b" / "summary.html").read_text(encoding="utf-8")
    assert json.loads((tmp_path / "home" / "serving" / "fallback.json").read_text())["active"] is True


@pytest.mark.parametrize("extra, needle", [
    (["--labels-as-of", "2030-01-01"], "need --labels"),
    (["--labels", "LABELS", "--labels-as-of", "2020-01-01"], "matures on"),
    (["--labels", "LABELS", "--labels-as-of", "not-a-date"], "not a date"),
    (["--labels", "LABELS", "--validation-auc", "1.7"], "not an AUC"),
])
def test_backtest_mistakes_are_one_line_errors(demo_workdir, demo_reference, tmp_path, capsys, extra, needle):
    extra = [str(demo_workdir / "book" / "defaults.parquet") if x == "LABELS" else x for x in extra]
    code = main(["--quiet", "monitor", "--reference", str(demo_reference), "--current",
                 str(demo_reference), "--out", str(tmp_path / "o"), "--workdir", str(tmp_path),
                 *extra])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err


def test_a_backtest_of_rows_graded_on_two_scales_is_refused(demo_workdir, demo_reference, tmp_path, capsys):
    """Grade 4 of one scale is not grade 4 of another: a scored book mixing them (by version, or
    one version with other edges) is not backtested grade by grade."""
    ref = pd.read_parquet(demo_reference)
    matured = (ref["as_of"].max() + pd.DateOffset(months=12)).date().isoformat()
    for column, other in (("scale_version", "2"), ("scale_fingerprint", "0123456789ab")):
        mixed = ref.copy()
        mixed.loc[mixed.index[::2], column] = other
        mixed.to_parquet(tmp_path / "mixed.parquet")
        code = main(["--quiet", "monitor", "--reference", str(demo_reference), "--current", str(demo_reference),
                     "--out", str(tmp_path / "o"), "--workdir", str(tmp_path), "--labels",
                     str(demo_workdir / "book" / "defaults.parquet"), "--labels-as-of", matured,
                     "--backtest", str(tmp_path / "mixed.parquet")])
        err = capsys.readouterr().err
        assert code == 2 and "several master scales" in err and other in err, err
