"""Bad input on the command line, tried as a user would: exit 2 and one line naming the option,
never an internal error, a traceback or a numpy repr; a date the data does not reach never
reaches the order-entry store."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from riskcast.cli import main

from conftest import dated_table


def _refused(argv, capsys, *needles):
    """Run the command; it must exit 2 with one line on stderr holding every needle."""
    code = main(["--quiet", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and "internal error" not in err and "np.float64" not in err and "np.int64" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.fixture(scope="module")
def data_end(demo_workdir):
    from riskcast.data.io import read_tables

    return read_tables(demo_workdir / "book", with_truth=False).last_date


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory):
    """A user's feature table (no date column), and the same table with a one-class target."""
    d = tmp_path_factory.mktemp("tables")
    df = dated_table(5).drop(columns=["when"])
    df.to_csv(d / "t.csv", index=False)
    df.assign(y=0).to_csv(d / "one.csv", index=False)
    df.assign(y=df["y"].astype(float) * 2.5).to_csv(d / "scaled.csv", index=False)
    return d


def _stamp(path: Path):
    return path.read_bytes(), os.stat(path).st_mtime_ns, os.stat(path).st_ino


def test_the_data_end_is_the_latest_date_of_any_table(small_book):
    t = small_book
    assert t.last_date >= t.invoices["paid_date"].max().normalize()
    assert t.last_date >= t.invoices["issue_date"].max().normalize()
    assert t.last_date >= t.financial_statements["filed_date"].max().normalize()
    late = t.invoices.copy()
    late.loc[late.index[0], "paid_date"] = t.last_date + pd.Timedelta(days=40)
    from dataclasses import replace

    assert replace(t, invoices=late).last_date == t.last_date + pd.Timedelta(days=40)


def test_a_rescore_past_the_data_end_is_refused_and_leaves_the_store(demo_workdir, workdir_copy, data_end, tmp_path,
                                                                    capsys):
    store = workdir_copy / "features.sqlite"
    before = _stamp(store)
    as_of = (data_end + pd.Timedelta(days=730)).strftime("%Y-%m-%d")
    out = tmp_path / "future.parquet"
    argv = ["rescore", "--data", str(demo_workdir / "book"), "--as-of", as_of, "--out", str(out),
            "--workdir", str(workdir_copy)]
    _refused(argv, capsys, "--as-of", as_of, str(data_end.date()), "730 days", "--allow-future-as-of")
    assert _stamp(store) == before and not out.exists()

    _refused([*argv, "--allow-future-as-of", "--replace-store"], capsys, "--replace-store")
    assert _stamp(store) == before

    assert main(["--quiet", *argv, "--allow-future-as-of"]) == 0
    printed = capsys.readouterr()
    assert _stamp(store) == before  # a what-if never reaches order entry, although it is newer
    assert len(pd.read_parquet(out)) > 0
    assert "left as it is" in printed.err and "(unchanged)" in printed.out


def test_features_a_day_past_the_end_pass_and_more_needs_the_flag(demo_workdir, data_end, tmp_path, capsys):
    book = str(demo_workdir / "book")
    out = tmp_path / "f.parquet"
    next_day = (data_end + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    assert main(["--quiet", "features", "--data", book, "--as-of", next_day, "--out", str(out)]) == 0
    capsys.readouterr()
    later = (data_end + pd.Timedelta(days=2)).strftime("%Y-%m-%d")
    _refused(["features", "--data", book, "--as-of", f"2024-01-01,{later}", "--out", str(tmp_path / "g.parquet")],
             capsys, "--as-of", later, "2 days past")
    assert not (tmp_path / "g.parquet").exists()
    assert main(["--quiet", "features", "--data", book, "--as-of", later, "--out", str(tmp_path / "g.parquet"),
                 "--allow-future-as-of"]) == 0
    assert (pd.read_parquet(tmp_path / "g.parquet")["as_of"] == pd.Timestamp(later)).all()


@pytest.mark.parametrize("command", ["features", "rescore"])
def test_a_date_no_book_can_reach_is_refused_even_with_the_flag(demo_workdir, tmp_path, capsys, command):
    argv = [command, "--data", str(demo_workdir / "book"), "--as-of", "2999-01-01", "--out", str(tmp_path / "x.parquet"),
            "--allow-future-as-of"]
    if command == "rescore":
        argv += ["--workdir", str(demo_workdir)]
    _refused(argv, capsys, "--as-of", "2999-01-01")
    _refused([a for a in argv if a != "--allow-future-as-of"], capsys, "--as-of", "2999-01-01")


def test_monitor_refuses_a_labels_date_out_of_range(demo_workdir, tmp_path, capsys):
    _refused(["monitor", "--current", str(demo_workdir / "scored_book.parquet"), "--out", str(tmp_path / "m"),
              "--labels", str(demo_workdir / "book" / "defaults.parquet"), "--labels-as-of", "2999-01-01",
              "--workdir", str(tmp_path / "home")], capsys, "--labels-as-of", "2999-01-01")


@pytest.mark.parametrize("table, extra, needles", [
    ("one.csv", [], ["y", "only one class (0)"]),
    ("one.csv", ["--folds", "3"], ["y", "only one class (0)"]),
    ("t.csv", ["--folds", "100000"], ["--folds", "100,000", "2,000 rows"]),
    ("t.csv", ["--folds", "1000"], ["--folds", "1,000", "rarer class"]),
    ("scaled.csv", [], ["y", "must be 0/1", "found 0, 2.5"]),
])
def test_train_table_refuses_a_table_it_cannot_fold(table_dir, tmp_path, capsys, table, extra, needles):
    _refused(["train-table", "--table", str(table_dir / table), "--target", "y", *extra,
              "--workdir", str(tmp_path / "home")], capsys, *needles)


def test_a_one_class_target_with_a_time_column_names_the_target(tmp_path, capsys):
    dated_table(6).assign(y=1).to_csv(tmp_path / "dated.csv", index=False)
    _refused(["train-table", "--table", str(tmp_path / "dated.csv"), "--target", "y", "--time-col", "when",
              "--workdir", str(tmp_path / "home")], capsys, "table.y", "only one class (1)")


@pytest.mark.parametrize("command, kind", [
    ("generate", "folder"), ("features", "file"), ("rescore", "file"), ("backtest", "file"), ("monitor", "folder"),
])
def test_out_of_the_wrong_kind_is_refused_before_any_work(demo_workdir, tmp_path, capsys, command, kind):
    """Each command's --out, given a file where a folder goes (or a folder where a file goes),
    or a path through a file."""
    a_file, a_folder = tmp_path / "taken.txt", tmp_path / "taken"
    a_file.write_text("x")
    a_folder.mkdir()
    book = str(demo_workdir / "book")
    common = {
        "generate": ["generate", "--customers", "60"],
        "features": ["features", "--data", book, "--as-of", "2025-01-01"],
        "rescore": ["rescore", "--data", book, "--as-of", "2025-01-01", "--workdir", str(demo_workdir)],
        "backtest": ["backtest", "--data", book, "--workdir", str(tmp_path / "home")],
        "monitor": ["monitor", "--current", str(demo_workdir / "scored_book.parquet"), "--workdir", str(tmp_path / "home")],
    }[command]
    wrong = a_file if kind == "folder" else a_folder
    errs = [_refused([*common, "--out", str(wrong)], capsys, "--out", wrong.name, f"a {kind} is needed"),
            _refused([*common, "--out", str(a_file / "below")], capsys, "--out", "taken.txt", "is a file")]
    assert not any(str(tmp_path) in e for e in errs)  # names, not paths
    assert a_file.read_text() == "x" and not any(a_folder.iterdir())


def test_a_work_directory_that_is_a_file_is_refused(demo_workdir, tmp_path, capsys):
    a_file = tmp_path / "work"
    a_file.write_text("x")
    _refused(["train", "--data", str(demo_workdir / "book"), "--workdir", str(a_file)], capsys, "--workdir", "work")
    _refused(["models", "list", "--workdir", str(a_file)], capsys, "--workdir")


@pytest.mark.parametrize("table", ["invoices", "customers"])
def test_a_table_in_both_csv_and_parquet_is_refused_naming_both(demo_workdir, tmp_path, capsys, table):
    book = Path(shutil.copytree(demo_workdir / "book", tmp_path / "book"))
    pd.read_parquet(book / f"{table}.parquet").to_csv(book / f"{table}.csv", index=False)
    err = _refused(["features", "--data", str(book), "--as-of", "2025-01-01", "--out", str(tmp_path / "f.parquet")],
                   capsys, table, f"{table}.parquet", f"{table}.csv")
    assert str(tmp_path) not in err  # names, not paths
    assert not (tmp_path / "f.parquet").exists()
    (book / f"{table}.parquet").unlink()  # one file: read as before
    assert main(["--quiet", "features", "--data", str(book), "--as-of", "2025-01-01",
                 "--out", str(tmp_path / "f.parquet")]) == 0


def test_the_installed_command_exits_2_in_one_line(table_dir, tmp_path):
    """The console script a user runs, not only ``main``: exit status and stderr as a shell sees them."""
    exe = Path(sys.executable).with_name("riskcast")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "riskcast.cli"]
    env = {k: v for k, v in os.environ.items() if k != "RISKCAST_DEBUG"}
    r = subprocess.run([*cmd, "--quiet", "train-table", "--table", str(table_dir / "t.csv"), "--target", "y",
                        "--folds", "100000", "--workdir", str(tmp_path / "home")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "riskcast train-table: error: --folds: 100,000 is more than the 2,000 rows of the table"]
