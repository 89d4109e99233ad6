"""The ``riskcast`` command line: parses options, calls the library, prints results.

Every command prints a one-line error and exits 2 on bad input; ``monitor`` exits 1 when an
alert threshold is crossed. Heavy libraries are imported inside the commands so that
``--help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from .config import GeneratorConfig, RiskcastConfig, WorkPaths, config_path_for, load_config, workdir
from .env import offline_environment
from .errors import InputError, RiskcastError


class Progress:
    """Timestamped progress lines on stderr, so long jobs show they are alive."""

    def __init__(self, quiet: bool = False) -> None:
        self.t0 = time.monotonic()
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.t0:6.1f}s] {message}", file=sys.stderr, flush=True)


def _config(args: argparse.Namespace) -> RiskcastConfig:
    """``--config``, else (for commands with a work directory) the work directory's own file."""
    explicit = getattr(args, "config", None)
    if not hasattr(args, "workdir"):
        return load_config(explicit)
    return load_config(config_path_for(_paths(args).root, explicit))


def _paths(args: argparse.Namespace) -> WorkPaths:
    return WorkPaths(root=workdir(getattr(args, "workdir", None)))


def _read_book(args: argparse.Namespace, with_truth: bool = True):
    from riskcast.data.io import read_tables
    from riskcast.data.mapping import load_mapping

    mapping = load_mapping(args.mapping) if getattr(args, "mapping", None) else None
    return read_tables(args.data, with_truth=with_truth, mapping=mapping)


def _whole(text: str, minimum: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < minimum:
        raise argparse.ArgumentTypeError(f"{text!r} must be {minimum} or more")
    return v


def _positive(text: str) -> int:
    return _whole(text, 1)


def _non_negative(text: str) -> int:
    return _whole(text, 0)


def _generator_config(cfg: RiskcastConfig, args: argparse.Namespace):
    updates = {k: getattr(args, k) for k in ("customers", "years", "start", "seed", "scenario") if getattr(args, k, None) is not None}
    try:
        return cfg.generator.model_validate({**cfg.generator.model_dump(), **updates})
    except ValueError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise InputError(f"generator options: {where + ': ' if where else ''}{err['msg']}", field=where or None) from None


# -- commands -------------------------------------------------------------------------------

def cmd_generate(args: argparse.Namespace, say: Progress) -> int:
    from riskcast.data.synthetic import write_book

    gen = _generator_config(_config(args), args)
    say(f"generating a {gen.scenario} book: {gen.customers:,} customers over {gen.years} years (seed {gen.seed})")
    written = write_book(gen, Path(args.out), progress=say)
    for name, (path, rows) in written.items():
        print(f"{name:22s} {rows:>10,} rows  {path}")
    return 0


def cmd_features(args: argparse.Namespace, say: Progress) -> int:
    from riskcast.data.io import write_parquet
    from riskcast.features.build import build_features, parse_as_of

    dates = parse_as_of(args.as_of)
    tables = _read_book(args, with_truth=False)
    df = build_features(tables, dates, progress=say)
    write_parquet(df, args.out)
    print(f"{len(df):,} feature rows for {len(dates)} date(s) -> {args.out}")
    return 0


def _print_metrics(metrics: dict) -> None:
    keys = [("LightGBM model", "test"), ("scorecard", "scorecard_test"), ("true PD (ceiling)", "oracle_test")]
    print(f"{'test window':22s} {'AUC':>7s} {'Brier':>8s} {'KS':>6s} {'ECE':>7s} {'grades off':>10s}")
    for label, p in keys:
        if f"{p}_auc" in metrics:
            ece = f"{metrics[p + '_ece']:7.4f}" if f"{p}_ece" in metrics else f"{'':7s}"
            off = f"{metrics[p + '_jeffreys_rejected_share']:10.0%}" if f"{p}_jeffreys_rejected_share" in metrics else ""
            print(f"{label:22s} {metrics[p + '_auc']:7.4f} {metrics[p + '_brier']:8.5f} {metrics[p + '_ks']:6.3f} {ece} {off}")
    if "cv_auc" in metrics:
        print(f"{'cross-validated AUC':22s} {metrics['cv_auc']:7.4f} (+/- {metrics['cv_auc_std']:.4f})")


def _train(tables, cfg: RiskcastConfig, paths: WorkPaths, say: Progress, tune: int = 0):
    from riskcast.data.io import write_parquet
    from riskcast.training import tracking
    from riskcast.training.pipeline import train_on_book

    uri = tracking.configure(paths.root)
    say(f"MLflow tracking at {uri}")
    outcome = train_on_book(tables, cfg, paths.root, progress=say, tune=tune)
    write_parquet(outcome.reference, paths.reference)
    run = outcome.run
    print(f"MLflow run {run.run_id}: registered {run.model_name} version {run.version}")
    print(f"promotion gate: {run.gate['reason']} -> "
          + ("alias 'champion'" if run.promoted else "alias 'challenger' only"))
    _print_metrics(outcome.metrics)
    print(f"monitoring reference (test window, scored): {paths.reference}")
    return outcome


def cmd_train(args: argparse.Namespace, say: Progress) -> int:
    tables = _read_book(args)
    _train(tables, _config(args), _paths(args), say, tune=args.tune)
    return 0


def cmd_train_table(args: argparse.Namespace, say: Progress) -> int:
    from riskcast.data.io import read_any
    from riskcast.training import tracking
    from riskcast.training.pipeline import train_on_table

    paths = _paths(args)
    df = read_any(args.table)
    tracking.configure(paths.root)
    name = args.name or Path(args.table).stem
    out = train_on_table(df, args.target, _config(args), paths.root, name=name, id_col=args.id_col,
                         time_col=args.time_col, folds=args.folds, progress=say)
    print(f"MLflow run {out.run.run_id}: registered {out.run.model_name} version {out.run.version}"
          + (" (champion)" if out.run.promoted else " (challenger)"))
    _print_metrics(out.metrics)
    return 0


def _file_key(path: str | Path | None) -> list | None:
    """What identifies an input for resuming: its files' names, sizes and modification times
    (a folder's own files, not hidden ones: an output written beside the tables, or its
    unfinished work, must not change the key)."""
    if not path:
        return None
    p = Path(path)
    files = sorted(f for f in p.iterdir() if not f.name.startswith(".")) if p.is_dir() else [p]
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()]


def _store_rule(path: Path, as_of, forced: bool) -> tuple[bool, str | None]:
    """Whether a rescore as of ``as_of`` may replace the live order-entry store, and what to say:
    a back-dated rescore (a what-if, a rerun of an old day) must not put older features in front
    of order entry unless the command says so."""
    from riskcast.features.store import store_as_of

    if not path.exists():
        return True, None
    new = as_of.strftime("%Y-%m-%d")
    try:
        live = store_as_of(path)
    except InputError:
        return True, f"the live order-entry store cannot be read; replaced by this rescore as of {new}"
    if live is None:
        return True, f"the live order-entry store does not record its date; replaced by this rescore as of {new}"
    if live <= new:
        return True, None
    if forced:
        return True, f"order-entry store as of {live} replaced by this rescore as of {new} (--replace-store)"
    return False, (f"order-entry store left as it is: it is as of {live}, this rescore as of {new} "
                   f"(older); rerun with --replace-store to replace it")


def _book_meta(features) -> dict[str, str]:
    """What the store keeps of the whole book: the sum of its limits (for the seller's cap)."""
    from riskcast.serving.core import BOOK_LIMITS_TOTAL

    if BOOK_LIMITS_TOTAL not in features.columns or features.empty:
        return {}
    return {BOOK_LIMITS_TOTAL: repr(float(features[BOOK_LIMITS_TOTAL].iloc[0]))}


def _rescore(tables, paths: WorkPaths, cfg: RiskcastConfig, as_of, out: Path, say: Progress, config_path=None,
             previous: Path | None = None, run_key: dict | None = None, engine: str = "local",
             spark_master: str | None = None, replace_store: bool = False):
    from riskcast.features.store import write_store
    from riskcast.serving.rescore import print_summary, read_previous, rescore_to_file
    from riskcast.serving.runtime import build_core

    core = build_core(paths.root, config_path)
    if core.model is None:
        raise RiskcastError(f"no champion model to rescore with: {core.model_error}")
    say(f"rescoring the book as of {as_of.date()} with {core.model.name} v{core.model.version}")
    prev = read_previous(previous) if previous else None
    result = rescore_to_file(tables, core, as_of, out, previous=prev, progress=say,
                             run_key={**(run_key or {}), "previous": _file_key(previous)},
                             engine=engine, spark_master=spark_master)
    replace, note = _store_rule(paths.store, as_of, replace_store)
    if note:
        print(f"riskcast: {note}", file=sys.stderr, flush=True)  # not a progress line: --quiet keeps it
    if replace:
        say(f"writing the order-entry feature store {paths.store}")
        write_store(result.features, paths.store, core.registry.version, meta=_book_meta(result.features))
    say("done")
    print(f"scored book: {result.summary['scored']:,} customers -> {out}")
    print(f"rejected: {result.rejected_path}   summary: {result.summary_path}")
    print_summary(result.summary)
    if note:
        print(note)
    print(f"latest-features store for order entry{'' if replace else ' (unchanged)'}: {paths.store}")
    return result


def cmd_rescore(args: argparse.Namespace, say: Progress) -> int:
    from riskcast.features.build import parse_as_of

    as_of = parse_as_of(args.as_of)
    if len(as_of) != 1:
        raise InputError("as_of: rescore takes one date", field="as_of")
    if args.previous and not Path(args.previous).exists():
        raise InputError(f"previous: file {args.previous} does not exist", field="previous")
    if not Path(args.data).is_dir():
        raise InputError(f"data folder {args.data} does not exist", field="data")
    from riskcast.data.io import read_tables
    from riskcast.data.mapping import load_mapping

    mapping = load_mapping(args.mapping) if args.mapping else None

    def tables():  # read when needed (not at all when resuming after the features were built)
        return read_tables(args.data, with_truth=False, mapping=mapping, reject_bad_customers=True)

    _rescore(tables, _paths(args), _config(args), as_of[0], Path(args.out), say, getattr(args, "config", None),
             previous=Path(args.previous) if args.previous else None,
             run_key={"data": _file_key(args.data), "mapping": _file_key(args.mapping)},
             engine=args.engine, spark_master=args.spark_master, replace_store=args.replace_store)
    return 0


def _who() -> str:
    import getpass

    try:
        return f"riskcast monitor ({getpass.getuser()})"
    except (KeyError, OSError):
        return "riskcast monitor"


#: what monitoring reads of a table besides the registry's features
MONITORED_EXTRA = ("customer_id", "as_of", "pd_12m", "grade", "band", "default_12m")


def _backtest(args: argparse.Namespace, ref, cur, cfg: RiskcastConfig, say: Progress):
    """The backtest asked for by ``--labels``: the scored book of ``--backtest`` (default: the
    current table) against the defaults table, discrimination judged against the reference."""
    import pandas as pd

    from riskcast.data.io import read_any
    from riskcast.features.build import parse_as_of
    from riskcast.monitoring.backtest import backtest, hanley_mcneil_se, matured_outcomes
    from riskcast.training.masterscale import grade_key

    scored = read_any(args.backtest, columns=MONITORED_EXTRA) if args.backtest else cur
    labels_as_of = parse_as_of(args.labels_as_of)[0] if args.labels_as_of else pd.Timestamp.today().normalize()
    rows, left_out = matured_outcomes(scored, read_any(args.labels), labels_as_of, cfg.training.horizon_months)
    if left_out["defaulted_before"]:
        say(f"backtest: {left_out['defaulted_before']:,} row(s) left out: the customer had defaulted by the "
            f"date it was scored")
    if left_out["no_pd"]:
        say(f"backtest: {left_out['no_pd']:,} row(s) left out: scored without a PD")
    if args.validation_auc is not None:
        if not 0.0 < args.validation_auc <= 1.0:
            raise InputError(f"validation_auc: {args.validation_auc} is not an AUC in (0, 1]", field="validation_auc")
        ref_auc, ref_se = args.validation_auc, 0.0
    elif {"default_12m", "pd_12m"} <= set(ref.columns) and ref["default_12m"].nunique() == 2:
        from sklearn.metrics import roc_auc_score

        y = ref["default_12m"].to_numpy()
        ref_auc = float(roc_auc_score(y, ref["pd_12m"].to_numpy(dtype=float)))
        ref_se = hanley_mcneil_se(ref_auc, int(y.sum()), int(len(y) - y.sum()))
    else:
        raise InputError("validation_auc: the reference holds no outcomes (default_12m) to take the AUC at "
                         "validation from; give --validation-auc", field="validation_auc")
    grades = rows["grade"].astype(str)
    say(f"backtest: {len(rows):,} scored rows with matured outcomes")
    return backtest(rows["default_12m"].to_numpy(), rows["pd_12m"].to_numpy(dtype=float), grades.to_numpy(),
                    sorted(grades.unique(), key=grade_key), ref_auc, cfg.monitoring, ref_se), left_out


def _monitor(reference: Path, current: Path, out: Path, cfg: RiskcastConfig, paths: WorkPaths, say: Progress,
             args: argparse.Namespace | None = None) -> int:
    """Drift (and, with ``--labels``, the backtest); on a severe alert the fallback switch is set."""
    from riskcast.data.io import read_any
    from riskcast.features.registry import default_registry
    from riskcast.monitoring.alerts import severe_reasons
    from riskcast.monitoring.drift import summarize_drift, write_drift_report
    from riskcast.serving.switch import FallbackSwitch

    features = default_registry().names
    wanted = [*features, *MONITORED_EXTRA]  # not the reason texts: most of a scored book's size
    ref, cur = read_any(reference, columns=wanted), read_any(current, columns=wanted)
    say(f"drift: reference {len(ref):,} rows vs current {len(cur):,} rows")
    summary = summarize_drift(ref, cur, features, cfg.monitoring)
    bt, left_out = _backtest(args, ref, cur, cfg, say) if args is not None and args.labels else (None, None)
    severe = severe_reasons(summary, bt, cfg.monitoring)
    alerts = [*summary.alert_reasons, *(f"red backtest: {r}" for r in (bt.reasons() if bt else []))]
    switch_note = None
    if severe and cfg.monitoring.switch:
        switch = FallbackSwitch(paths.fallback_switch)
        before = switch.state()
        if before is not None and before.active:
            switch_note = f"already in fallback mode ({before.fallback_reason})"
        else:
            state = switch.set("severe monitoring alert: " + "; ".join(severe), by=_who())
            switch_note = (f"set by {state.set_by} at {state.at}: order entry is decided by the scorecard until "
                           f"someone runs riskcast monitor --clear --reason ...")
    extra = {"alert": bool(alerts), "alert_reasons": alerts,
             "backtest": {**bt.to_dict(), "left_out": left_out} if bt else None,
             "severe_reasons": list(severe), "fallback_switch": switch_note}
    say("drift: Evidently report and summary page")
    write_drift_report(ref, cur, features, out, cfg.monitoring, summary=summary, extra=extra)
    d = summary.to_dict()
    print(f"summary: {out / 'summary.html'}  Evidently report: {out / 'drift_report.html'}  "
          f"JSON: {out / 'drift_summary.json'}")
    print(f"score PSI {d['score_psi']:.3f} ({d['score_band']}); drifted features {d['drift_share']:.0%}")
    if bt is not None:
        print(f"backtest: {bt.light} (AUC {bt.auc:.3f} against {bt.reference_auc:.3f}, {bt.auc_light}; "
              f"{bt.defaults:,} defaults of {bt.rows:,} against a mean PD of {bt.mean_pd:.2%}, {bt.portfolio_light}; "
              f"grades: {' '.join(f'{g.grade}:{g.light}' for g in bt.grades)})")
    for r in alerts:
        print(f"ALERT: {r}")
    if switch_note:
        print(f"FALLBACK: {switch_note}")
    if alerts:
        return 1
    print("no alert: the book is stable against the reference")
    return 0


def cmd_monitor(args: argparse.Namespace, say: Progress) -> int:
    paths = _paths(args)
    if args.clear:
        from riskcast.serving.switch import FallbackSwitch

        if not args.reason:
            raise InputError("reason: --clear needs --reason (it is recorded with who and when)", field="reason")
        switch = FallbackSwitch(paths.fallback_switch)
        before = switch.state()
        state = switch.clear(args.reason, by=_who())
        print(("fallback mode cleared" if before is not None and before.active else "fallback mode was not set; recorded")
              + f" by {state.set_by} at {state.at}: {state.reason} ({paths.fallback_switch})")
        return 0
    for opt in ("reference", "current", "out"):
        if not getattr(args, opt):
            raise InputError(f"{opt}: monitor needs --reference, --current and --out (or --clear --reason)", field=opt)
    if not args.labels and (args.backtest or args.labels_as_of or args.validation_auc is not None):
        raise InputError("labels: --backtest, --labels-as-of and --validation-auc need --labels", field="labels")
    return _monitor(Path(args.reference), Path(args.current), Path(args.out), _config(args), paths, say, args)


def cmd_replay(args: argparse.Namespace, say: Progress) -> int:
    """Exit 0 when every decision replayed is identical, 1 when one differs, 2 when one cannot be
    replayed (not on record, recorded before inputs were kept, its model or configuration gone)."""
    from riskcast.serving.replay import replay

    if bool(args.request_ids) + bool(args.all) + (args.last is not None) != 1:
        raise InputError("request_id: give REQUEST_ID ..., --all or --last N (one of them)", field="request_id")
    results = replay(_paths(args).root, args.request_ids or None, last=args.last, config_path=args.config)
    counts = {"identical": 0, "different": 0, "not_replayable": 0}
    for r in results:
        counts[r.status] += 1
        if r.status == "identical" and not args.request_ids:
            continue  # with --all or --last only what is not identical is listed
        print(f"{r.request_id}: {r.status.replace('_', ' ')}" + (f" ({r.note})" if r.note else ""))
        for where, recorded, again in r.differences:
            print(f"  {where}: recorded {recorded!r}, replayed {again!r}")
    print(f"{len(results):,} decision(s) replayed: {counts['identical']:,} identical, {counts['different']:,} "
          f"different, {counts['not_replayable']:,} not replayable")
    return 1 if counts["different"] else (2 if counts["not_replayable"] else 0)


def cmd_serve(args: argparse.Namespace, say: Progress) -> int:
    paths = _paths(args)
    env = dict(os.environ, RISKCAST_HOME=str(paths.root))
    if args.config:
        env["RISKCAST_CONFIG"] = str(Path(args.config).resolve())
    cmd = [sys.executable, "-m", "bentoml", "serve", "riskcast.serving.service:RiskcastService",
           "--host", args.host, "--port", str(args.port)]
    say(f"serving {paths.root} on http://{args.host}:{args.port} (POST /score, /docs.json)")
    os.execvpe(cmd[0], cmd, env)
    return 0  # pragma: no cover - exec does not return


def _demo_config(args: argparse.Namespace, paths: WorkPaths, seller: dict[str, float]
                 ) -> tuple[RiskcastConfig, Path]:
    """The work directory's ``riskcast.toml``: the ``--config`` given (if any) with the book's
    seller figures, unless it names its own; every later command on the work directory reads it."""
    import tomllib

    from riskcast.data.io import write_text

    text = Path(args.config).read_text(encoding="utf-8") if getattr(args, "config", None) else ""
    load_config(args.config) if getattr(args, "config", None) else None  # a bad file is refused first
    if "seller" not in tomllib.loads(text):
        text = (text.rstrip() + "\n\n" if text.strip() else "") + (
            "# the demo's seller: its credit sales are the book (half its turnover), 10% of revenue as cash flow\n"
            "[seller]\n" + "".join(f"{k} = {v!r}\n" for k, v in seller.items()))
    paths.root.mkdir(parents=True, exist_ok=True)
    write_text(text, paths.config)
    return load_config(paths.config), paths.config


def cmd_demo(args: argparse.Namespace, say: Progress) -> int:
    import pandas as pd

    from riskcast.data.io import write_tables
    from riskcast.data.synthetic import book_seller, generate_book

    cfg = _config(args)
    paths = _paths(args)
    gen = _generator_config(cfg, args)
    say(f"work directory {paths.root}")
    say(f"1/5 generating a synthetic book: {gen.customers:,} customers over {gen.years} years")
    tables = generate_book(gen, progress=say)
    write_tables(tables, paths.book)
    print(f"synthetic book (five raw tables + truth): {paths.book}")
    cfg, config_file = _demo_config(args, paths, book_seller(tables.invoices, tables.data_end))
    print(f"configuration, with the seller's figures set from the book: {config_file}")
    say("2/5 features, LightGBM, calibration, scorecard, MLflow")
    _train(tables, cfg, paths, say)
    as_of = tables.data_end
    say("3/5 rescoring the book")
    _rescore(tables, paths, cfg, as_of, paths.scored, say, paths.config)
    scored = pd.read_parquet(paths.scored, columns=["customer_id", "pd_12m"])
    example = scored.sort_values("pd_12m")["customer_id"].iloc[len(scored) // 2]
    say("4/5 drift report: training reference against the latest rescore")
    alert = _monitor(paths.reference, paths.scored, paths.drift, cfg, paths, say)
    say("5/5 done")
    home = paths.root
    bin_dir = Path(sys.executable).parent
    print()
    print("next steps:")
    print(f"  start the service : {bin_dir / 'riskcast'} serve --workdir {home} --host 127.0.0.1 --port 3000")
    print(f"  score an order    : curl -s -X POST http://127.0.0.1:3000/score -H 'content-type: application/json' "
          f"-d '{{\"customer_id\": \"{example}\", \"order_amount\": 25000}}'")
    print(f"  MLflow UI         : MLFLOW_DISABLE_TELEMETRY=true {bin_dir / 'mlflow'} ui --backend-store-uri sqlite:///{home / 'mlflow.db'} --host 127.0.0.1 --port 5000")
    if alert:
        print("(the drift report raised an alert: see above)")
    return 0


# -- parser ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    gen = GeneratorConfig()
    p = argparse.ArgumentParser(prog="riskcast", description="Probability of default and credit decisions for trade-credit customers.")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(func=fn)
        return sp

    def with_workdir(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--workdir", help="where embedded state lives (MLflow database, store, reports); "
                                          "default $RISKCAST_HOME or ./riskcast-work")
        sp.add_argument("--config", help="TOML file overriding the default configuration")

    sp = add("demo", cmd_demo, "the whole main job on a synthetic book: generate, train, register, rescore, drift report")
    sp.add_argument("--customers", type=_positive, help=f"customers in the synthetic book (default {gen.customers})")
    with_workdir(sp)

    sp = add("generate", cmd_generate, "write a synthetic book: the five raw tables and the true PDs, as Parquet")
    sp.add_argument("--out", required=True, help="folder to write the tables into")
    sp.add_argument("--customers", type=_positive, help=f"number of customers (default {gen.customers})")
    sp.add_argument("--years", type=_positive, help=f"years of history (default {gen.years})")
    sp.add_argument("--start", help=f"first month of the book, YYYY-MM-DD (default {gen.start})")
    sp.add_argument("--seed", type=int, help=f"random seed (default {gen.seed}); the same seed gives the same book")
    sp.add_argument("--scenario", choices=["baseline", "recession"], help=f"economic scenario (default {gen.scenario})")
    sp.add_argument("--config", help="TOML file overriding the default configuration")

    sp = add("features", cmd_features, "point-in-time feature table: one row per customer and as-of date")
    sp.add_argument("--data", required=True, help="folder with the five raw tables (Parquet or CSV)")
    sp.add_argument("--mapping", help="TOML column mapping from your own files to the five tables")
    sp.add_argument("--as-of", required=True, help="date or comma-separated dates, YYYY-MM-DD")
    sp.add_argument("--out", required=True, help="Parquet file to write")

    sp = add("train", cmd_train, "train on a book, evaluate out of time, log to MLflow, register; promote if the gate passes")
    sp.add_argument("--data", required=True, help="folder with the five raw tables (Parquet or CSV)")
    sp.add_argument("--mapping", help="TOML column mapping from your own files to the five tables")
    sp.add_argument("--tune", type=_non_negative, default=0, metavar="N",
                    help="first try N LightGBM settings on the validation window (nested MLflow runs); default 0")
    with_workdir(sp)

    sp = add("train-table", cmd_train_table, "train on your own feature table (CSV, Parquet or ARFF) with a 0/1 target")
    sp.add_argument("--table", required=True, help="the feature table")
    sp.add_argument("--target", required=True, help="the 0/1 default column")
    sp.add_argument("--id-col", help="an id column to leave out of the features")
    sp.add_argument("--time-col", help="a date column: split out of time instead of cross-validating")
    sp.add_argument("--folds", type=_positive, default=10, help="cross-validation folds without a time column (default 10)")
    sp.add_argument("--name", help="name for the experiment and registered model (default: the file's stem)")
    with_workdir(sp)

    sp = add("rescore", cmd_rescore, "score the whole book on one date and refresh the order-entry feature store")
    sp.add_argument("--data", required=True, help="folder with the five raw tables (Parquet or CSV)")
    sp.add_argument("--mapping", help="TOML column mapping from your own files to the five tables")
    sp.add_argument("--as-of", required=True, help="the date to score on, YYYY-MM-DD")
    sp.add_argument("--out", required=True, help="Parquet file to write (atomically); a rerun with the same "
                                                 "arguments resumes an interrupted one")
    sp.add_argument("--previous", help="an earlier rescore to compare with (grade migration, newly over limit)")
    sp.add_argument("--engine", choices=["local", "spark"], default="local",
                    help="where the scoring runs: this process (default) or Spark (pip install 'riskcast[spark]')")
    sp.add_argument("--spark-master", help="with --engine spark: the cluster's master URL (default: the one "
                                           "spark-submit set, else local mode on this machine)")
    sp.add_argument("--replace-store", action="store_true",
                    help="replace the order-entry store even when it is more recent than --as-of (by default a "
                         "back-dated rescore writes its scored files and leaves the live store alone)")
    with_workdir(sp)

    sp = add("replay", cmd_replay, "decide recorded decisions again from their audit rows (same model version and "
                                   "configuration) and report, field by field, whether each is identical; exit 1 "
                                   "when one differs, 2 when one cannot be replayed")
    sp.add_argument("request_ids", nargs="*", metavar="REQUEST_ID", help="the decisions to replay")
    sp.add_argument("--all", action="store_true", help="every decision on record")
    sp.add_argument("--last", type=_positive, metavar="N", help="the last N decisions on record")
    with_workdir(sp)

    sp = add("serve", cmd_serve, "start the HTTP service (POST /score, /score_batch; /livez, /readyz, /metrics)")
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sp.add_argument("--port", type=_positive, default=3000, help="port (default 3000)")
    with_workdir(sp)

    sp = add("monitor", cmd_monitor, "drift and stability report (HTML + JSON), backtest on matured outcomes; exit "
                                     "code 1 when an alert threshold is crossed; a severe alert sets fallback mode")
    sp.add_argument("--reference", help="reference table (e.g. reference.parquet from training)")
    sp.add_argument("--current", help="current table (e.g. a scored book from rescore)")
    sp.add_argument("--out", help="folder for summary.html, drift_report.html and drift_summary.json")
    sp.add_argument("--labels", help="defaults table (customer_id, default_date) to backtest a scored book against")
    sp.add_argument("--backtest", help="the scored book to backtest, scored 12 months or more before "
                                       "--labels-as-of (default: --current)")
    sp.add_argument("--labels-as-of", help="the date up to which --labels is complete, YYYY-MM-DD (default: today)")
    sp.add_argument("--validation-auc", type=float, help="the AUC at validation (default: from the reference's "
                                                          "default_12m and pd_12m)")
    sp.add_argument("--clear", action="store_true", help="leave fallback mode (with --reason); nothing else is done")
    sp.add_argument("--reason", help="why fallback mode is cleared (recorded with who and when)")
    with_workdir(sp)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    offline_environment()
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow sets its level when imported
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    say = Progress(quiet=args.quiet)
    try:
        return int(args.func(args, say) or 0)
    except RiskcastError as exc:
        print(f"riskcast {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, InputError) else 3
    except KeyboardInterrupt:
        print(f"riskcast {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # our fault, not the caller's: one line, the traceback on request
        if os.environ.get("RISKCAST_DEBUG"):
            raise
        print(f"riskcast {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(set RISKCAST_DEBUG=1 for the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
