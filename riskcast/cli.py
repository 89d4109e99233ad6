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
    root = workdir(getattr(args, "workdir", None))
    _writable(root, "--workdir", folder=True, access=False)  # reading commands may run on a read-only one
    return WorkPaths(root=root)


def _writable(path: str | Path, option: str, *, folder: bool, access: bool = True) -> Path:
    """Refuse, before any work, an output the command could not write: a folder where a file is
    to go (or a file where a folder is), or a parent that is a file or not writable."""
    path, field = Path(path), option.lstrip("-").replace("-", "_")
    shown = path.name or str(path)
    if path.exists() and path.is_dir() != folder:
        want, got = ("folder", "file") if folder else ("file", "folder")
        raise InputError(f"{option}: {shown} is an existing {got}, and a {want} is needed here", field=field)
    parent = path if folder and path.exists() else path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{option}: {shown} cannot be written, {parent.name} in its path is a file, not a folder",
                         field=field)
    if access and not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{option}: {shown} cannot be written, its folder {parent.name} is not writable",
                         field=field)
    return path


def _as_of(text: str, option: str = "--as-of") -> list:
    """The dates of an as-of option, each within the range of days a book can be computed on."""
    import pandas as pd

    from riskcast.features.build import parse_as_of

    dates = parse_as_of(text)
    lo, hi = pd.Timestamp.min.ceil("D"), pd.Timestamp.max.floor("D")
    for d in dates:
        if not lo <= d <= hi:
            raise InputError(f"{option}: {d.date()} is outside the dates riskcast works with "
                             f"({lo.date()} to {hi.date()})", field=option.lstrip("-").replace("-", "_"))
    return dates


def _read_book(args: argparse.Namespace, cfg: RiskcastConfig, with_truth: bool = True):
    """The book of ``--data`` (through ``--mapping``), with what was derived from the ledger or
    could not be used said on stderr: not a progress line, ``--quiet`` keeps it."""
    from riskcast.data.io import read_tables
    from riskcast.data.mapping import load_mapping

    mapping = load_mapping(args.mapping) if getattr(args, "mapping", None) else None
    tables = read_tables(args.data, with_truth=with_truth, mapping=mapping, label=cfg.label)
    _say_notes(tables.notes)
    return tables


def _say_notes(notes) -> None:
    for line in notes.lines() if notes.anything else ():
        print(f"riskcast: {line}", file=sys.stderr, flush=True)


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
    from riskcast.data.ledger_export import write_ledger_export
    from riskcast.data.synthetic import write_book

    gen = _generator_config(_config(args), args)
    _writable(args.out, "--out", folder=True)
    say(f"generating a {gen.scenario} book: {gen.customers:,} customers over {gen.years} years (seed {gen.seed})"
        + (", written as a ledger export alone" if args.ledger_only else ""))
    write = write_ledger_export if args.ledger_only else write_book
    written = write(gen, Path(args.out), progress=say)
    for name, (path, rows) in written.items():
        print(f"{name:22s} {rows:>10,} rows  {path}")
    return 0


def cmd_features(args: argparse.Namespace, say: Progress) -> int:
    from riskcast.data.io import days_past_data, write_parquet
    from riskcast.features.build import build_features

    dates = _as_of(args.as_of)
    _writable(args.out, "--out", folder=False)
    tables = _read_book(args, _config(args), with_truth=False)
    days_past_data(tables, dates, allow=args.allow_future_as_of)
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


def _print_trained(outcome) -> None:
    run = outcome.run
    print(f"MLflow run {run.run_id}: registered {run.model_name} version {run.version}")
    print(f"promotion gate: {run.gate['reason']} -> "
          + ("alias 'champion'" if run.promoted else "alias 'challenger' only"))
    _print_metrics(outcome.metrics)
    print("monitoring reference (test window, scored): logged with the bundle of version "
          f"{run.version}; `riskcast monitor` compares with the champion's")


def cmd_train(args: argparse.Namespace, say: Progress) -> int:
    from riskcast.training.pipeline import train_on_book

    cfg, root = _config(args), _paths(args).root  # a bad configuration or work directory before the book is read
    tables = _read_book(args, cfg)
    _print_trained(train_on_book(tables, cfg, root, progress=say, tune=args.tune))
    return 0


def cmd_train_table(args: argparse.Namespace, say: Progress) -> int:
    from riskcast.data.io import read_any
    from riskcast.training.pipeline import train_on_table

    paths = _paths(args)
    df = read_any(args.table)
    name = args.name or Path(args.table).stem
    out = train_on_table(df, args.target, _config(args), paths.root, name=name, id_col=args.id_col,
                         time_col=args.time_col, folds=args.folds, progress=say)
    print(f"MLflow run {out.run.run_id}: registered {out.run.model_name} version {out.run.version}"
          + (" (champion)" if out.run.promoted else " (challenger)"))
    _print_metrics(out.metrics)
    return 0


def _print_rescored(job, out: Path) -> None:
    from riskcast.serving.rescore import print_summary

    result = job.result
    print(f"scored book: {result.summary['scored']:,} customers -> {out}")
    print(f"rejected: {result.rejected_path}   summary: {result.summary_path}")
    print_summary(result.summary)
    col = result.summary.get("collections")
    if col:
        print(f"collections worklist: {col['worklist_file']}   stop list: {col['stop_list_file']}")
    if job.store_note:
        print(job.store_note)
    print(f"latest-features store for order entry{'' if job.store_replaced else ' (unchanged)'}: {job.store}")


def _store_note(job) -> None:
    if job.store_note:  # not a progress line: --quiet keeps it
        print(f"riskcast: {job.store_note}", file=sys.stderr, flush=True)


def cmd_rescore(args: argparse.Namespace, say: Progress) -> int:
    as_of = _as_of(args.as_of)
    if len(as_of) != 1:
        raise InputError("as_of: rescore takes one date", field="as_of")
    _writable(args.out, "--out", folder=False)
    if args.previous and not Path(args.previous).exists():
        raise InputError(f"previous: file {args.previous} does not exist", field="previous")
    if not Path(args.data).is_dir():
        raise InputError(f"data folder {args.data} does not exist", field="data")
    from riskcast.data.io import read_tables
    from riskcast.data.mapping import load_mapping

    mapping = load_mapping(args.mapping) if args.mapping else None
    label = _config(args).label

    def tables():  # read when needed (not at all when resuming after the features were built)
        return read_tables(args.data, with_truth=False, mapping=mapping, reject_bad_customers=True, label=label)

    from riskcast.serving.rescore_job import input_key, rescore_workdir

    out = Path(args.out)
    job = rescore_workdir(tables, _paths(args).root, as_of[0], out, config_path=getattr(args, "config", None),
                          previous=Path(args.previous) if args.previous else None,
                          run_key={"data": input_key(args.data), "mapping": input_key(args.mapping)},
                          engine=args.engine, spark_master=args.spark_master, replace_store=args.replace_store,
                          allow_future_as_of=args.allow_future_as_of, progress=say)
    _store_note(job)
    _print_rescored(job, out)
    return 0


def _who() -> str:
    user = _who_acts()
    return "riskcast monitor" if user == "unknown" else f"riskcast monitor ({user})"


def _print_monitored(m) -> int:
    """The run's verdict; the exit code: 1 when an alert threshold is crossed."""
    d = m.drift.to_dict()
    out = m.out
    print(f"reference: {m.reference}")
    print(f"summary: {out / 'summary.html'}  Evidently report: {out / 'drift_report.html'}  "
          f"JSON: {out / 'drift_summary.json'}")
    print(f"score PSI {d['score_psi']:.3f} ({d['score_band']}); drifted features {d['drift_share']:.0%}")
    bt = m.backtest
    if bt is not None:
        print(f"backtest: {bt.light} (AUC {bt.auc:.3f} against {bt.reference_auc:.3f}, {bt.auc_light}; "
              f"{bt.defaults:,} defaults of {bt.rows:,} against a mean PD of {bt.mean_pd:.2%}, {bt.portfolio_light}; "
              f"grades: {' '.join(f'{g.grade}:{g.light}' for g in bt.grades)})")
    for r in m.alerts:
        print(f"ALERT: {r}")
    if m.severe and m.switch_note is None:
        print("SEVERE (monitoring.switch is off, fallback mode not set): " + "; ".join(m.severe))
    if m.switch_note:
        print(f"FALLBACK: {m.switch_note}")
    if m.alert:
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
    for opt in ("current", "out"):
        if not getattr(args, opt):
            raise InputError(f"{opt}: monitor needs --current and --out (or --clear --reason)", field=opt)
    _writable(args.out, "--out", folder=True)
    from riskcast.monitoring.run import Labels, check_labels_options, monitor

    check_labels_options(args.labels, args.backtest, args.labels_as_of, args.validation_auc)
    labels = None
    if args.labels:
        labels = Labels(Path(args.labels), Path(args.backtest) if args.backtest else None,
                        _as_of(args.labels_as_of, "--labels-as-of")[0] if args.labels_as_of else None,
                        args.validation_auc)
    m = monitor(Path(args.current), Path(args.out), _config(args), paths,
                reference=Path(args.reference) if args.reference else None, labels=labels, who=_who(), progress=say)
    return _print_monitored(m)


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
    # the service's log names no path (it may be shipped elsewhere): the folder by its name only
    say(f"serving work directory {paths.root.name!r} on http://{args.host}:{args.port} (POST /score, /docs.json)")
    os.execvpe(cmd[0], cmd, env)
    return 0  # pragma: no cover - exec does not return


def cmd_demo(args: argparse.Namespace, say: Progress) -> int:
    from .demo import run_demo

    paths = _paths(args)
    gen = _generator_config(_config(args), args)
    d = run_demo(gen, paths, getattr(args, "config", None), progress=say)
    print(f"synthetic book (five raw tables + truth): {d.book}")
    print(f"configuration, with the seller's figures set from the book: {d.config_file}")
    _print_trained(d.train)
    if d.labels:
        lab = d.labels
        days = lab["median_days_later"]
        later = "" if days is None else (f", known a median {abs(days):.0f} days "
                                         + ("later" if days > 0 else "earlier") if days else ", on the same day")
        print(f"default label: the defaults table ({lab['table']:,} customers); the ledger alone would give "
              f"{lab['ledger']:,} (an invoice more than {lab['days_past_due']} days past due, or written "
              f"off; {lab['both']:,} of them in the table too{later}): a ledger without a defaults table trains on it")
    if d.gate_override:
        print(f"GATE OVERRIDDEN: {d.gate_override}")
    _store_note(d.rescore)
    _print_rescored(d.rescore, paths.scored)
    alert = _print_monitored(d.monitor)
    home = paths.root
    bin_dir = Path(sys.executable).parent
    print()
    print("next steps:")
    print(f"  start the service : {bin_dir / 'riskcast'} serve --workdir {home} --host 127.0.0.1 --port 3000")
    print(f"  score an order    : curl -s -X POST http://127.0.0.1:3000/score -H 'content-type: application/json' "
          f"-d '{{\"customer_id\": \"{d.example_customer}\", \"order_amount\": 25000}}'")
    print(f"  MLflow UI         : MLFLOW_DISABLE_TELEMETRY=true {bin_dir / 'mlflow'} ui --backend-store-uri sqlite:///{home / 'mlflow.db'} --host 127.0.0.1 --port 5000")
    print(f"  credit desk       : {bin_dir / 'riskcast'} desk add-user ann --role analyst --workdir {home}  (prints "
          "the key), then http://127.0.0.1:3000/desk/ with the service started")
    if alert:
        print("(the drift report raised an alert: see above)")
    return 0


def _print_walk_forward(result) -> None:
    """One line per origin and the pooled line: what the model of each date made of the quarters after it."""
    rows = [(str(o.origin.date()), o.row()["train_window"], o.row()["scored_window"], o.figures) for o in result.origins]
    rows.append(("pooled", "", "", result.pooled))
    truth = "auc_vs_true_pd" in result.pooled
    print(f"{'origin':10s} {'trained on':23s} {'scored':23s} {'rows':>7s} {'defaults':>8s} {'AUC':>6s} {'Brier':>7s} "
          f"{'mean PD':>7s} {'observed':>8s}" + (f" {'AUC/true':>8s} {'Brier/true':>10s}" if truth else ""))
    for origin, trained, scored, f in rows:
        print(f"{origin:10s} {trained:23s} {scored:23s} {int(f['rows']):7,d} {int(f['defaults']):8,d} {f['auc']:6.3f} "
              f"{f['brier']:7.4f} {f['mean_pd']:7.2%} {f['default_rate']:8.2%}"
              + (f" {f['auc_vs_true_pd']:8.3f} {f['brier_vs_true_pd']:10.3f}" if truth else ""))


def cmd_backtest(args: argparse.Namespace, say: Progress) -> int:
    """The walk-forward backtest: for each origin, a model of the outcomes known on that date
    scores the next snapshots."""
    from riskcast.data.io import write_text
    from riskcast.training.walkforward import walk_forward_on_book

    if args.out:
        _writable(args.out, "--out", folder=False)
    cfg = _config(args)
    tables = _read_book(args, cfg)
    updates = {k: v for k, v in (("walk_forward_origins", args.origins), ("walk_forward_snapshots", args.snapshots))
               if v is not None}
    if updates:
        cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update=updates)})
    result = walk_forward_on_book(tables, cfg, progress=say)
    _print_walk_forward(result)
    if args.out:
        import json

        write_text(json.dumps(result.to_dict(), indent=2, default=str), Path(args.out))
        print(f"walk-forward backtest: {args.out}")
    return 0


def _who_acts() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def cmd_models(args: argparse.Namespace, say: Progress) -> int:
    """List the registered versions, or move the champion alias with a recorded reason."""
    from riskcast.training import lifecycle, tracking

    cfg = _config(args)
    tracking.configure(_paths(args).root)
    name = cfg.serving.model_name
    if args.action == "list":
        versions = lifecycle.list_versions(name)
        print(lifecycle.format_versions(versions))
        return 0
    if args.action == "promote":
        if args.version is None:
            raise InputError("version: models promote needs the VERSION to promote", field="version")
        done = lifecycle.promote(name, args.version, args.reason, by=_who_acts(), override_gate=args.override_gate)
    else:
        if args.version is not None:
            raise InputError("version: models rollback takes the version to go back to as --to VERSION",
                             field="version")
        done = lifecycle.rollback(name, args.reason, by=_who_acts(), to=args.to)
    print(done)
    print("the service keeps the version it loaded until POST /admin/reload")
    return 0


def cmd_scale(args: argparse.Namespace, say: Progress) -> int:
    """Suggest master-scale edges from a scored table's PDs: printed, never applied."""
    from riskcast.data.io import read_any
    from riskcast.training.masterscale import pds_of, scale_toml, suggest_scale

    pds = pds_of(read_any(args.scored, columns=["pd_12m"]))
    cfg = _config(args)
    print(scale_toml(suggest_scale(pds, args.grades, "even" if args.even_bands else None, args.version), pds,
                     cfg.master_scale))
    return 0


def _desk(args: argparse.Namespace):
    from riskcast.serving.runtime import open_desk

    return open_desk(_config(args), _paths(args))


def cmd_desk(args: argparse.Namespace, say: Progress) -> int:
    """The credit desk from the shell of the machine it runs on: users and keys (the first
    admin is made here), the queue, review cases for limits whose review fell due, cases for
    referrals on record without one, the schema."""
    desk = _desk(args)
    by = f"cli:{_who_acts()}"
    action = args.action
    if action == "migrate":
        from riskcast.serving.desk.store import migrate

        print(f"the desk's schema is at revision {migrate(desk.engine)}")
    elif action == "add-user":
        if not args.user_id or not args.role:
            raise InputError("add-user needs USER_ID and --role", field="user_id" if not args.user_id else "role")
        key = desk.add_user(args.user_id, args.name or args.user_id, args.role, by=by)
        print(f"user {args.user_id} ({args.role}) added; the key, shown only now:")
        print(key)
    elif action == "new-key":
        print(desk.new_key(_needs(args.user_id, "user_id"), args.label or "key", by=by))
    elif action == "revoke-key":
        print(f"key {desk.revoke_key(_needs(args.user_id, 'key'), by=by)} revoked")
    elif action in ("set-role", "deactivate"):
        user = desk.set_role(_needs(args.user_id, "user_id"), args.role if action == "set-role" else None, by=by,
                             active=False if action == "deactivate" else None)
        print(f"user {user.user_id}: role {user.role}, {'active' if user.active else 'deactivated'}")
    elif action == "users":
        for u in desk.users():
            keys = ", ".join(f"{k['key']}{' (revoked)' if k['revoked'] else ''}" for k in u["keys"]) or "no key"
            print(f"{u['user_id']:<16} {u['role']:<17} {'active' if u['active'] else 'deactivated':<11} {u['name']}  "
                  f"keys: {keys}")
    elif action == "queue":
        cases = desk.queue()
        print(f"{len(cases)} open case(s), the most at stake (exposure x PD) first")
        for c in cases:
            pd_ = c.facts.get("pd_12m")
            print(f"  case {c.case_id:>5}  {_printable(c.customer_id):<14} {c.kind:<9} {c.state:<16} exposure {c.exposure:>14,.2f}  "
                  f"PD {'-' if pd_ is None else f'{pd_:.2%}':>7}  orders {len(c.orders)}  opened {c.opened_at[:10]}")
    elif action == "sync":
        from riskcast.serving.audit import AuditLog
        from riskcast.serving.desk.orders import sync_referrals
        from riskcast.serving.runtime import audit_url

        log = AuditLog(audit_url(_config(args), _paths(args)))
        try:
            done = sync_referrals(desk, log)
        finally:
            log.close()
        print(f"{done['referrals_on_record']:,} referrals on record; {done['opened_now']:,} had no case and are now on "
              "the desk")
    elif action == "reviews":
        opened = desk.open_reviews()
        print(f"{len(opened)} approved limit(s) past their review date: "
              + (", ".join(f"{cid} (case {cid_case})" for cid, cid_case in opened.items()) or "none"))
    return 0


def _printable(text: str) -> str:
    """An id as one line of a listing: with a line break or another control character in it
    (an order may bring any customer id), its escaped form."""
    return text if text.isprintable() else repr(text)


def _needs(value: str | None, name: str) -> str:
    if not value:
        raise InputError(f"{name}: this action needs it", field=name)
    return value


def cmd_receivables(args: argparse.Namespace, say: Progress) -> int:
    """Receivables on a date: aging, DSO, average days delinquent, collection effectiveness."""
    from riskcast.data.io import write_parquet
    from riskcast.data.receivables import book_receivables, loss_rates, provision, receivables_at, receivables_lines

    dates = _as_of(args.as_of)
    if len(dates) != 1:
        raise InputError("as_of: receivables takes one date", field="as_of")
    as_of = dates[0]
    if args.out:
        _writable(args.out, "--out", folder=False)
    cfg = _config(args)
    tables = _read_book(args, cfg, with_truth=False)
    r = cfg.receivables
    say(f"aging {len(tables.invoices):,} invoices as of {as_of.date()}")
    book = book_receivables(tables.invoices, as_of, r.buckets, r.dso_days, r.cei_days)
    history = loss_rates(tables.invoices, tables.defaults, as_of, r.buckets, cfg.training.horizon_months,
                         r.provision_snapshots, r.provision_step_months)
    book["provision"] = provision(book["aging"], history, _scored_pd(args.scored, as_of) if args.scored else None)
    for line in receivables_lines(book):
        print(line)
    if args.out:
        per_customer = receivables_at(tables.invoices, as_of, r.buckets, r.dso_days)
        write_parquet(per_customer.reset_index(), Path(args.out))
        print(f"per customer: {args.out} ({len(per_customer):,} customers)")
    return 0


def cmd_collections(args: argparse.Namespace, say: Progress) -> int:
    """The dunning ladder: the worklist on a date, a step taken on an invoice, the steps on record."""
    if args.action == "record":
        by = f"cli:{_who_acts()}"[:64]
        step = _desk(args).record_step(_needs(args.customer, "customer"), _needs(args.invoice, "invoice"),
                                       _needs(args.stage, "stage"), _needs(args.outcome, "outcome"),
                                       by, note=args.note, promised_date=args.promised,
                                       request_id=args.request_id)
        print(f"step {step['id']} on record: invoice {_printable(step['invoice_id'])} of "
              f"{_printable(step['customer_id'])}, {step['stage']}: {step['outcome']}"
              + (f" (promised for {step['promised_date']})" if step["promised_date"] else "")
              + f", by {step['user_id']} at {step['at']}")
        return 0
    if args.action == "steps":
        for st in _desk(args).steps(args.customer, args.invoice):
            print(f"{st['at'][:16]}  {_printable(st['customer_id']):<14} {_printable(st['invoice_id']):<16} "
                  f"{st['stage']:<10} {st['outcome']:<15} {st['user_id']}"
                  + (f"  promised {st['promised_date']}" if st["promised_date"] else "")
                  + (f"  {_printable(st['note'])}" if st["note"] else ""))
        return 0
    return _worklist(args, say)


def _worklist(args: argparse.Namespace, say: Progress) -> int:
    import pandas as pd

    from riskcast.data.io import write_parquet
    from riskcast.data.ledger import open_invoices
    from riskcast.serving.collections import collections_lines, collections_of, customer_pds
    from riskcast.serving.rescore import side_paths

    for value, name in ((args.data, "data"), (args.as_of, "as_of")):
        if not value:
            raise InputError(f"{name}: the worklist needs --{name.replace('_', '-')}", field=name)
    dates = _as_of(args.as_of)
    if len(dates) != 1:
        raise InputError("as_of: the worklist takes one date", field="as_of")
    as_of = dates[0]
    paths = _paths(args)
    out = Path(args.out) if args.out else paths.root / f"collections_{as_of.date()}.parquet"
    _writable(out, "--out", folder=False)
    scored = Path(args.scored) if args.scored else paths.scored
    scored_on = _scored_on(scored, as_of, "the worklist ranks by the PDs of a rescore (run `riskcast rescore`, or "
                                          "give --scored)")
    rejected_path = side_paths(scored)[0]
    cfg = _config(args)
    tables = _read_book(args, cfg, with_truth=False)
    say(f"the invoices open on {as_of.date()}, against the PDs of the rescore as of {scored_on.date()}")
    pds = customer_pds(pd.read_parquet(scored, columns=["customer_id", "pd_12m"]),
                       pd.read_parquet(rejected_path) if rejected_path.exists() else None)
    steps = pd.DataFrame(_desk(args).steps())
    work, stops, summary = collections_of(open_invoices(tables.invoices, as_of), pds, cfg, as_of, steps)
    stop_path = out.with_name(f"{out.stem}.stop_list.parquet")
    write_parquet(work, out)
    write_parquet(stops, stop_path)
    if (as_of - scored_on).days > 92:
        print(f"riskcast: the PDs are from the rescore as of {scored_on.date()}, {(as_of - scored_on).days} days "
              "before the worklist's date", file=sys.stderr)
    for line in collections_lines(summary):
        print(line)
    top = work[work["step_due_now"]].head(args.top)
    if len(top):
        print(f"the {len(top)} steps due now that are most at stake:")
    for r in top.itertuples():
        print(f"  {r.rank:>6}  {_printable(str(r.customer_id)):<14} {_printable(str(r.invoice_id)):<16} "
              f"{r.days_past_due:>4} days  {r.open_amount:>14,.2f}  EL {r.expected_loss:>12,.2f}  {r.step}"
              + ("  (disputed)" if r.disputed else "") + ("" if r.pd_source == "rescore" else f"  ({r.pd_source})"))
    print(f"worklist: {out} ({len(work):,} overdue invoices)   stop list: {stop_path} ({len(stops):,} customers)")
    return 0


def _scored_on(scored: Path, as_of, needed_for: str):
    """The date a rescore (``--scored``) scored its book on, refused unless it exists, has its
    summary beside it and is on or before ``as_of`` (PDs scored later were not known then)."""
    import json

    import pandas as pd

    from riskcast.serving.rescore import side_paths

    if not scored.exists():
        raise InputError(f"scored: {scored} does not exist: {needed_for}", field="scored")
    summary_path = side_paths(scored)[1]
    try:
        on = pd.Timestamp(json.loads(summary_path.read_text())["as_of"])
    except (OSError, ValueError, KeyError):
        raise InputError(f"scored: {scored} has no rescore summary beside it ({summary_path.name}): the date its PDs "
                         "were scored on is not known", field="scored") from None
    if on > as_of:
        raise InputError(f"scored: {scored} was scored as of {on.date()}, after --as-of {as_of.date()}: its PDs "
                         "were not known then", field="scored")
    return on


def _scored_pd(path: str, as_of) -> float:
    """The exposure-weighted PD of a rescore made on or before ``as_of`` (``--scored``)."""
    import pandas as pd

    from riskcast.serving.rescore import exposure_pd

    scored = Path(path)
    _scored_on(scored, as_of, "the provision's forward adjustment weighs its PDs")
    pd_ = exposure_pd(pd.read_parquet(scored, columns=["pd_12m", "exposure"]))
    if pd_ is None:
        raise InputError(f"scored: {scored} has no exposure to weigh its PDs by", field="scored")
    return pd_


def cmd_report(args: argparse.Namespace, say: Progress) -> int:
    """Reports on the desk's decisions: override rates and, where outcomes matured, their defaults."""
    import json

    import pandas as pd

    from riskcast.data.io import json_ready
    from riskcast.data.ledger import last_date
    from riskcast.serving.desk.overrides import override_report, report_lines

    cfg = _config(args)
    defaults = last = None
    if args.data:
        tables = _read_book(args, cfg, with_truth=False)
        defaults = tables.defaults
        found = last_date(tables.invoices)
        last = pd.Timestamp(found).date() if found is not None else None
    report = override_report(_desk(args).cases(), defaults, horizon_months=cfg.training.horizon_months,
                             data_last_date=last)
    for line in report_lines(report):
        print(line)
    if args.json:
        from riskcast.data.io import write_text

        write_text(json.dumps(json_ready(report), indent=2), Path(args.json))
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
    sp.add_argument("--ledger-only", action="store_true",
                    help="write only the invoices, as a ledger export (ar_ledger.csv: its own column names, "
                         "M/D/YYYY dates) with the mapping file that reads it (mapping.toml)")
    sp.add_argument("--config", help="TOML file overriding the default configuration")

    sp = add("features", cmd_features, "point-in-time feature table: one row per customer and as-of date")
    sp.add_argument("--data", required=True, help="folder with the raw tables (Parquet or CSV): the invoices, and any of customers, financial_statements, industry_signals, defaults")
    sp.add_argument("--mapping", help="TOML column mapping from your own files to the raw tables")
    sp.add_argument("--as-of", required=True, help="date or comma-separated dates, YYYY-MM-DD; a date more than a day "
                                                   "past the data's last date is refused (see --allow-future-as-of)")
    sp.add_argument("--allow-future-as-of", action="store_true",
                    help="build features on a date past the data's end (every invoice still open then counts as "
                         "that much later)")
    sp.add_argument("--out", required=True, help="Parquet file to write")

    sp = add("train", cmd_train, "train on a book, evaluate out of time, log to MLflow, register; promote if the gate passes")
    sp.add_argument("--data", required=True, help="folder with the raw tables (Parquet or CSV): the invoices, and any of customers, financial_statements, industry_signals, defaults")
    sp.add_argument("--mapping", help="TOML column mapping from your own files to the raw tables")
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
    sp.add_argument("--data", required=True, help="folder with the raw tables (Parquet or CSV): the invoices, and any of customers, financial_statements, industry_signals, defaults")
    sp.add_argument("--mapping", help="TOML column mapping from your own files to the raw tables")
    sp.add_argument("--as-of", required=True, help="the date to score on, YYYY-MM-DD; more than a day past the data's "
                                                   "end (its latest invoice, payment, filing, signal month or default) "
                                                   "is refused (see --allow-future-as-of)")
    sp.add_argument("--allow-future-as-of", action="store_true",
                    help="score a date past the data's end, a what-if (every invoice still open then counts as "
                         "that much later): the scored files are written to --out, the order-entry store is "
                         "always left alone")
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

    sp = add("backtest", cmd_backtest, "walk-forward backtest: for each of several dates, train only on the "
                                       "outcomes known on that date and score the next quarters")
    sp.add_argument("--data", required=True, help="folder with the raw tables (Parquet or CSV)")
    sp.add_argument("--mapping", help="TOML column mapping from your own files to the tables")
    sp.add_argument("--origins", type=_positive, help="origin dates, a quarter apart, the newest last "
                                                      "(default training.walk_forward_origins)")
    sp.add_argument("--snapshots", type=_positive, help="snapshots scored after each origin "
                                                        "(default training.walk_forward_snapshots)")
    sp.add_argument("--out", help="JSON file for the figures of every origin and the pooled ones")
    with_workdir(sp)

    sp = add("models", cmd_models, "the registered model versions: list them, promote one to champion, roll "
                                   "the champion back; every move records who and why")
    sp.add_argument("action", choices=["list", "promote", "rollback"])
    sp.add_argument("version", nargs="?", help="promote: the version to make champion")
    sp.add_argument("--to", help="rollback: the former champion to go back to (default: the one before the "
                                 "current champion)")
    sp.add_argument("--reason", help="why (recorded on the model version; promote and rollback need it)")
    sp.add_argument("--override-gate", action="store_true",
                    help="promote a version whose promotion gate failed (the reason says why)")
    with_workdir(sp)

    sp = add("scale", cmd_scale, "master scale: suggest grade edges from a scored table's PDs (printed as TOML "
                                 "to paste into the configuration with a new version; never applied)")
    sp.add_argument("action", choices=["suggest"])
    sp.add_argument("--scored", required=True, help="a scored book or reference with pd_12m")
    sp.add_argument("--grades", type=_positive, default=10, help="number of grades (default 10)")
    sp.add_argument("--version", default=None, help="the new scale's version (default: suggested-<fingerprint>)")
    sp.add_argument("--even-bands", action="store_true",
                    help="deal the A-E bands out evenly over the grades (moves PDs between bands, so it changes "
                         "decisions); by default the bands keep their PD ranges")
    with_workdir(sp)

    sp = add("desk", cmd_desk, "the credit desk: users and their keys (roles viewer, analyst, manager, "
                               "credit_committee, admin), the referral queue, review cases, the database schema")
    sp.add_argument("action", choices=["add-user", "new-key", "revoke-key", "set-role", "deactivate", "users", "queue",
                                       "reviews", "sync", "migrate"])
    sp.add_argument("user_id", nargs="?", metavar="USER_ID|KEY",
                    help="the user (add-user, new-key, set-role, deactivate), or the key or its listed prefix "
                         "(revoke-key)")
    sp.add_argument("--role", choices=["viewer", "analyst", "manager", "credit_committee", "admin"],
                    help="add-user, set-role: the user's role")
    sp.add_argument("--name", help="add-user: the user's full name (default: the id)")
    sp.add_argument("--label", help="new-key: what the key is for")
    with_workdir(sp)

    sp = add("receivables", cmd_receivables, "receivables on a date: aging by days past due, DSO (count-back and "
                                             "simple), average days delinquent, collection effectiveness index")
    sp.add_argument("--data", required=True, help="folder with the raw tables (the invoices are enough)")
    sp.add_argument("--mapping", help="TOML column mapping from your own files to the raw tables")
    sp.add_argument("--as-of", required=True, help="the date, YYYY-MM-DD")
    sp.add_argument("--out", help="Parquet file for the figures of every customer")
    sp.add_argument("--scored", help="a rescore made on or before --as-of: its PDs adjust the provision matrix "
                                     "forward (without it the historical loss rates stand)")
    sp.add_argument("--config", help="TOML file overriding the default configuration")

    sp = add("collections", cmd_collections, "the dunning ladder: the worklist of overdue invoices on a date (stage, "
                                             "step due, PD, expected loss; the stop list beside it), a step taken "
                                             "on an invoice (record), the steps on record (steps)")
    sp.add_argument("action", nargs="?", choices=["worklist", "record", "steps"], default="worklist")
    sp.add_argument("--data", help="worklist: folder with the raw tables (the invoices are enough)")
    sp.add_argument("--mapping", help="worklist: TOML column mapping from your own files to the raw tables")
    sp.add_argument("--as-of", help="worklist: the date, YYYY-MM-DD")
    sp.add_argument("--scored", help="worklist: the rescore whose PDs rank it, scored on or before --as-of "
                                     "(default: the work directory's scored book)")
    sp.add_argument("--out", help="worklist: Parquet file (default: collections_<date>.parquet in the work "
                                  "directory); the stop list goes beside it")
    sp.add_argument("--top", type=_positive, default=10, help="worklist: how many steps due now to print (default 10)")
    sp.add_argument("--customer", help="record: the customer; steps: only this customer's")
    sp.add_argument("--invoice", help="record: the invoice; steps: only this invoice's")
    sp.add_argument("--stage", help="record: the stage of the ladder the step answers")
    sp.add_argument("--outcome", help="record: what came of it (configured; by default done, no answer, promise to "
                                      "pay, disputed, paid, escalated)")
    sp.add_argument("--promised", help="record: a promise to pay's date, YYYY-MM-DD")
    sp.add_argument("--note", help="record: a note")
    sp.add_argument("--request-id", help="record: an id of the step, so that a retry records it once")
    with_workdir(sp)

    sp = add("report", cmd_report, "reports on the credit desk: override rates by analyst, band and reason code, and "
                                   "the default rate of overridden against followed decisions where outcomes matured")
    sp.add_argument("report", choices=["overrides"])
    sp.add_argument("--data", help="folder with the raw tables: its defaults table measures the outcomes")
    sp.add_argument("--mapping", help="TOML column mapping from your own files to the raw tables")
    sp.add_argument("--json", help="also write the report as JSON to this file")
    with_workdir(sp)

    sp = add("monitor", cmd_monitor, "drift and stability report (HTML + JSON), backtest on matured outcomes; exit "
                                     "code 1 when an alert threshold is crossed; a severe alert sets fallback mode")
    sp.add_argument("--reference", help="reference table (default: the one the champion's training run logged "
                                        "with its bundle: its scored test window)")
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
