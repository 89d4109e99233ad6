"""The command line: every contract command exists, explains itself, and fails in one clear line."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from riskcast.cli import build_parser, main

from conftest import POLISH

COMMANDS = ["demo", "generate", "features", "train", "train-table", "rescore", "replay", "serve", "monitor",
            "backtest", "models", "scale"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: riskcast " + command in out
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{command} {action.option_strings} has no help text"


@pytest.mark.parametrize("argv, needle", [
    (["features", "--data", "/no/such/dir", "--as-of", "2024-01-01", "--out", "x.parquet"], "does not exist"),
    (["features", "--data", ".", "--as-of", "2024-99-01", "--out", "x.parquet"], "as_of"),
    (["monitor", "--reference", "/no/ref.parquet", "--current", "/no/cur.parquet", "--out", "d"], "does not exist"),
    (["train-table", "--table", "/no/t.csv", "--target", "y"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, capsys, tmp_path):
    code = main(["--quiet", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err


def test_wrong_columns_name_table_and_column(tmp_path, small_book, capsys):
    from riskcast.data.io import write_tables

    write_tables(small_book, tmp_path)
    inv = pd.read_parquet(tmp_path / "invoices.parquet").drop(columns=["due_date"])
    inv.to_parquet(tmp_path / "invoices.parquet")
    code = main(["--quiet", "features", "--data", str(tmp_path), "--as-of", "2024-01-01", "--out", str(tmp_path / "f.parquet")])
    assert code == 2
    assert "invoices.due_date: required column is missing" in capsys.readouterr().err


def test_demo_leaves_every_result_behind(demo_workdir, demo_reference):
    assert demo_reference.exists() and demo_reference.name == "reference.parquet"
    assert not (demo_workdir / "reference.parquet").exists()  # none beside the models: each has its own
    for name in ("mlflow.db", "features.sqlite", "scored_book.parquet",
                 "drift/drift_report.html", "drift/drift_summary.json", "book/invoices.parquet", "book/truth.parquet"):
        assert (demo_workdir / name).exists(), name
    summary = json.loads((demo_workdir / "drift" / "drift_summary.json").read_text())
    assert "score_psi" in summary


def test_demo_registers_a_champion_with_the_stable_metric_names(demo_workdir):
    from mlflow.tracking import MlflowClient

    from riskcast.training import tracking

    tracking.configure(demo_workdir)
    client = MlflowClient()
    mv = client.get_model_version_by_alias("riskcast-pd", "champion")
    metrics = client.get_run(mv.run_id).data.metrics
    for key in ("test_auc", "test_brier", "scorecard_test_auc", "oracle_test_auc", "oracle_test_brier"):
        assert key in metrics, key
    # the model learns real signal, and the ceiling is above it
    assert 0.65 < metrics["test_auc"] <= metrics["oracle_test_auc"] + 0.03
    assert metrics["scorecard_test_auc"] > 0.6


def test_rescore_and_features_commands(demo_workdir, workdir_copy, tmp_path, capsys):
    book = demo_workdir / "book"
    out = tmp_path / "scored.parquet"
    assert main(["--quiet", "rescore", "--data", str(book), "--as-of", "2025-06-01", "--out", str(out),
                 "--workdir", str(workdir_copy)]) == 0
    scored = pd.read_parquet(out)
    assert scored["customer_id"].is_unique and scored["pd_12m"].between(0, 1).all()
    assert {"grade", "credit_limit", "recommended_terms_days", "reason_1", "decision"} <= set(scored.columns)
    feats = tmp_path / "f.parquet"
    assert main(["--quiet", "features", "--data", str(book), "--as-of", "2024-01-01,2024-04-01", "--out", str(feats)]) == 0
    f = pd.read_parquet(feats)
    assert set(f["as_of"].dt.strftime("%Y-%m-%d")) == {"2024-01-01", "2024-04-01"}


def test_monitor_exit_code_follows_the_verdict(demo_reference, tmp_path):
    ref = pd.read_parquet(demo_reference)
    same = tmp_path / "same.parquet"
    ref.sample(frac=1.0, random_state=1).to_parquet(same)
    home = ["--workdir", str(tmp_path / "home")]  # a severe alert sets fallback mode there, not in the demo's
    assert main(["--quiet", "monitor", "--reference", str(demo_reference),
                 "--current", str(same), "--out", str(tmp_path / "a"), *home]) == 0
    shifted = ref.copy()
    shifted["pd_12m"] = (shifted["pd_12m"] * 4).clip(upper=1)
    shifted["dbt_mean_3m"] = shifted["dbt_mean_3m"] + 40
    shifted.to_parquet(tmp_path / "shifted.parquet")
    assert main(["--quiet", "monitor", "--reference", str(demo_reference),
                 "--current", str(tmp_path / "shifted.parquet"), "--out", str(tmp_path / "b"), *home]) == 1
    assert (tmp_path / "b" / "drift_report.html").exists() and (tmp_path / "b" / "summary.html").exists()
    assert json.loads((tmp_path / "home" / "serving" / "fallback.json").read_text())["active"] is True


@pytest.mark.skipif(not (POLISH / "1year.arff").exists(), reason="shared benchmark data not present")
def test_train_table_on_the_polish_arff(tmp_path, capsys):
    code = main(["--quiet", "train-table", "--table", str(POLISH / "1year.arff"), "--target", "class",
                 "--folds", "3", "--workdir", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "registered riskcast-table-1year version 1" in out
    from mlflow.tracking import MlflowClient

    from riskcast.training import tracking

    tracking.configure(tmp_path)
    mv = MlflowClient().get_model_version_by_alias("riskcast-table-1year", "champion")
    m = MlflowClient().get_run(mv.run_id).data.metrics
    assert m["cv_auc"] > 0.85  # published LightGBM results are ~0.95 on this file


def test_train_table_on_a_csv_with_a_text_column(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(3)
    n = 1500
    kind = rng.choice(["retail", "wholesale", "services", "construction"], size=n)
    table = pd.DataFrame({"x": rng.normal(size=n), "sector": kind, "ref": [f"r{i}" for i in range(n)]})
    logit = -2.0 + 0.5 * table["x"] + np.where(kind == "construction", 2.0, 0.0)
    table["y"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    table.to_csv(tmp_path / "sectors.csv", index=False)
    code = main(["--quiet", "train-table", "--table", str(tmp_path / "sectors.csv"), "--target", "y",
                 "--id-col", "ref", "--folds", "3", "--workdir", str(tmp_path / "home")])
    assert code == 0
    out = capsys.readouterr().out
    assert "registered riskcast-table-sectors version 1" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("cross-validated AUC"))
    assert float(line.split()[2]) > 0.7  # the sector carries the signal: without it ~0.6


def test_serve_answers_over_http_on_loopback(demo_workdir):
    """`riskcast serve` starts a real server bound to 127.0.0.1 and answers POST /score."""
    import socket
    import time
    import urllib.request

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = dict(os.environ, RISKCAST_HOME=str(demo_workdir))
    proc = subprocess.Popen([sys.executable, "-m", "riskcast.cli", "--quiet", "serve", "--host", "127.0.0.1",
                             "--port", str(port), "--workdir", str(demo_workdir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(base + "/readyz", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("service did not become ready: " + proc.stderr.read1().decode(errors="replace")[-2000:])
        cid = str(pd.read_parquet(demo_workdir / "scored_book.parquet")["customer_id"].iloc[0])
        req = urllib.request.Request(base + "/score", data=json.dumps({"customer_id": cid, "order_amount": 1000}).encode(),
                                     headers={"content-type": "application/json"})
        body = json.loads(urllib.request.urlopen(req, timeout=10).read())
        assert body["customer_id"] == cid and 0 < body["pd_12m"] < 1
        bad = urllib.request.Request(base + "/score", data=b'{"customer_id": "x", "order_amount": -1}',
                                     headers={"content-type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(bad, timeout=10)
        assert e.value.code == 400 and b"order_amount" in e.value.read()
        metrics = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
        # the gate answers /score itself, inside BentoML's metrics: both answers are counted
        counted = [line for line in metrics.splitlines()
                   if line.startswith("bentoml_service_request_total") and 'endpoint="/score"' in line]
        assert any('http_response_code="200"' in line for line in counted), counted
        assert any('http_response_code="400"' in line for line in counted), counted
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_entry_points_switch_telemetry_off(monkeypatch, tmp_path):
    for key in ("MLFLOW_DISABLE_TELEMETRY", "BENTOML_DO_NOT_TRACK"):
        monkeypatch.delenv(key, raising=False)
    assert main(["--quiet", "generate", "--out", str(tmp_path), "--customers", "60"]) == 0
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"  # MLflow ignores "1"
    assert os.environ["BENTOML_DO_NOT_TRACK"] == "true"


@pytest.mark.parametrize("command", ["features", "rescore"])
def test_a_date_before_the_book_is_a_clear_input_error(demo_workdir, tmp_path, capsys, command):
    argv = ["--quiet", command, "--data", str(demo_workdir / "book"), "--as-of", "1990-01-01",
            "--out", str(tmp_path / "x.parquet")]
    if command == "rescore":
        argv += ["--workdir", str(demo_workdir)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no customer is trading on 1990-01-01" in err and "Traceback" not in err
    assert not (tmp_path / "x.parquet").exists()


def test_a_failed_challenger_leaves_the_champions_reference_and_models_moves_the_alias(workdir_copy, tmp_path, capsys):
    """Monitoring compares with the model serving: a retrain that fails the gate registers its
    own reference with its bundle and changes nothing monitoring reads; `riskcast models` moves
    the champion with a recorded reason, and monitoring follows the alias."""
    from mlflow.tracking import MlflowClient

    from riskcast.config import WorkPaths, load_config
    from riskcast.monitoring.run import champion_reference
    from riskcast.training import tracking

    home = workdir_copy
    before, label = champion_reference(load_config(home / "riskcast.toml"), WorkPaths(root=home))
    assert label.startswith("riskcast-pd v1 ")
    # other edges under the champion's scale version are refused before anything is built
    moved = tmp_path / "moved.toml"
    grades = "".join(f'[[master_scale.grades]]\ngrade = "{g}"\npd_max = {p}\nband = "{b}"\n'
                     for g, p, b in (("1", 0.01, "A"), ("2", 0.05, "C"), ("3", 1.0, "E")))
    moved.write_text((home / "riskcast.toml").read_text() + '\n[master_scale]\nversion = "1"\n' + grades)
    assert main(["--quiet", "train", "--data", str(home / "book"), "--workdir", str(home), "--config", str(moved)]) == 2
    assert "master_scale.version" in capsys.readouterr().err
    strict = tmp_path / "strict.toml"
    strict.write_text((home / "riskcast.toml").read_text() + "\n[training]\npromotion_min_auc = 0.99\n"
                      "[training.lightgbm]\nn_estimators = 60\n")
    assert main(["--quiet", "train", "--data", str(home / "book"), "--workdir", str(home), "--config", str(strict)]) == 0
    out = capsys.readouterr().out
    assert "version 2" in out and "alias 'challenger' only" in out
    tracking.configure(home)
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("riskcast-pd", "champion").version) == "1"
    after, label = champion_reference(load_config(home / "riskcast.toml"), WorkPaths(root=home))
    assert label.startswith("riskcast-pd v1 ") and pd.read_parquet(after).equals(pd.read_parquet(before))
    scored = home / "scored_book.parquet"
    assert main(["--quiet", "monitor", "--current", str(scored), "--out", str(tmp_path / "m"),
                 "--workdir", str(home)]) in (0, 1)
    assert "reference: riskcast-pd v1 (champion)" in capsys.readouterr().out
    assert "<b>Reference:</b> riskcast-pd v1 (champion)" in (tmp_path / "m" / "summary.html").read_text()

    # a version whose gate failed is promoted only on purpose, with the reason on record
    assert main(["--quiet", "models", "promote", "2", "--reason", "validated by hand", "--workdir", str(home)]) == 2
    assert "gate" in capsys.readouterr().err
    assert main(["--quiet", "models", "promote", "2", "--reason", "validated by hand", "--override-gate",
                 "--workdir", str(home)]) == 0
    assert str(client.get_model_version_by_alias("riskcast-pd", "champion").version) == "2"
    _, label = champion_reference(load_config(home / "riskcast.toml"), WorkPaths(root=home))
    assert label.startswith("riskcast-pd v2 ")
    assert main(["--quiet", "models", "rollback", "--workdir", str(home)]) == 2  # no reason
    assert "reason" in capsys.readouterr().err
    assert main(["--quiet", "models", "rollback", "--reason", "v2 refers too many orders", "--workdir", str(home)]) == 0
    assert str(client.get_model_version_by_alias("riskcast-pd", "champion").version) == "1"
    capsys.readouterr()
    assert main(["--quiet", "models", "list", "--workdir", str(home)]) == 0
    listing = capsys.readouterr().out
    assert "validated by hand" in listing and "v2 refers too many orders" in listing


def test_the_walk_forward_backtest_from_the_command_line(demo_workdir, tmp_path, capsys):
    """Each origin's model knows only the outcomes closed on its date; the command prints a line
    per origin and the pooled one, and writes the figures as JSON."""
    cheap = tmp_path / "cheap.toml"
    cheap.write_text("[training.lightgbm]\nn_estimators = 60\nnum_threads = 1\n")
    out = tmp_path / "walk.json"
    assert main(["--quiet", "backtest", "--data", str(demo_workdir / "book"), "--origins", "2", "--config", str(cheap),
                 "--out", str(out), "--workdir", str(tmp_path / "home")]) == 0
    printed = capsys.readouterr().out
    assert "pooled" in printed and "AUC/true" in printed
    figures = json.loads(out.read_text())
    assert len(figures["origins"]) == 2
    for o in figures["origins"]:
        assert o["train_outcome_end"] <= o["origin"] and o["valid_outcome_end"] <= o["origin"]
        assert 0.5 < o["auc"] <= 1
    assert main(["--quiet", "backtest", "--data", str(demo_workdir / "book"), "--origins", "40",
                 "--workdir", str(tmp_path / "home")]) == 2
    assert "walk_forward_origins" in capsys.readouterr().err


def test_a_demo_whose_gate_refuses_the_first_model_promotes_it_on_record(tmp_path, capsys):
    """The demo must show the whole job: a first model refused by the gate (here an AUC floor
    no model reaches) becomes champion by hand, said on stdout and kept in the registry."""
    from mlflow.tracking import MlflowClient

    from riskcast.training import lifecycle, tracking

    strict = tmp_path / "strict.toml"
    strict.write_text("[training]\npromotion_min_auc = 0.99\n[training.lightgbm]\nn_estimators = 60\n")
    home = tmp_path / "home"
    assert main(["--quiet", "demo", "--customers", "1000", "--workdir", str(home), "--config", str(strict)]) == 0
    out = capsys.readouterr().out
    assert "alias 'challenger' only" in out and "GATE OVERRIDDEN" in out and "below the floor" in out
    assert (home / "scored_book.parquet").exists()
    tracking.configure(home)
    assert str(MlflowClient().get_model_version_by_alias("riskcast-pd", "champion").version) == "1"
    (v1,) = lifecycle.list_versions("riskcast-pd")
    assert v1.gate_passed is False and any("riskcast demo" in str(e) for e in v1.history)
