"""Rescoring the whole book from its raw tables, and scoring alone against plain ``Booster.predict``.

On the book of ``benchmarks/features.py`` (1,000,000 customers cut on the day the ledger
reaches 20,000,000 invoices) with a champion trained by ``riskcast demo`` on 50,000
customers (``benchmarks/_work.py``), each step in a fresh process, ``--runs`` times:

- ``rescore``: ``riskcast rescore`` end to end: read and validate the five raw tables, build
  the features, PD, score, grade, limit, terms, decision and the top reasons per customer,
  the scored file, the rejected rows, the summary and the order-entry store. Wall time of the
  command and its peak memory (the process's own high-water mark).
- ``scoring``: the feature rows of that book (the rows the rescore scored), held as the
  model's float matrix; each timed ``--runs`` times in one process: plain
  ``Booster.predict(X, raw_score=True)`` with LightGBM's threads (the baseline); riskcast's
  PD (``ModelBundle.model_pd``: compiled trees and calibration); and PD with every feature's
  contribution to it (what the reasons come from). The margins are compared with the
  baseline's before any figure is printed, and the one-off compile of the trees is timed.

- ``receivables``: the same rescore with ``[rescore] receivables = false`` (the credit
  decisions alone: no aging, open invoices, collections worklist or watchlist), alternating
  with the full one run by run; what the receivables steps add, as a share of that baseline.

    python benchmarks/rescoring.py                      # 1M customers, 20M invoices, 3 runs
    python benchmarks/rescoring.py --customers 100000 --invoices 2000000 --runs 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import features as feature_bench  # this folder's features benchmark: the same book and its arguments
from _work import peak_gb, run_step, step_arguments, trained_workdir

from riskcast.env import offline_environment

offline_environment()  # before anything imports MLflow; children inherit it

TARGET_SECONDS, TARGET_GB, TARGET_SPEEDUP = 60.0, 4.0, 2.5
#: the most the receivables steps (aging, collections, watchlist) may add to a rescore
TARGET_RECEIVABLES_SHARE = 0.20


def _rescore(book: Path, as_of: str, home: Path, out: Path, config: str | None = None) -> dict:
    from riskcast.cli import main

    code = main(["--quiet", "rescore", "--data", str(book), "--as-of", as_of, "--out", str(out),
                 "--workdir", str(home), *(["--config", config] if config else [])])
    summary = json.loads(out.with_name(out.stem + ".summary.json").read_text())
    return {"exit": code, "peak_gb": peak_gb(), "scored": summary["scored"], "rejected": summary["rejected"],
            "customers_in": summary["customers_in"]}


def _scoring(scored: Path, home: Path, runs: int) -> dict:
    import numpy as np
    import pandas as pd

    from riskcast.serving.runtime import build_core
    from riskcast.training.attribution import LeafAttribution

    bundle = build_core(home).model.bundle
    X = np.ascontiguousarray(bundle.matrix(pd.read_parquet(scored, columns=bundle.registry.names)))
    booster = bundle.booster
    with tempfile.TemporaryDirectory() as tmp:  # the one-off compile, into an empty folder
        start = time.perf_counter()
        fresh = LeafAttribution(booster, cache_dir=Path(tmp)).compiled()
        compile_s = time.perf_counter() - start
    if fresh is None:
        raise SystemExit("the trees could not be compiled (is there a C compiler?)")
    bundle.attribution.compiled()  # the work directory's copy, compiled or found
    base = booster.predict(X, raw_score=True)
    ours = bundle.attribution.margin(X)
    if not np.array_equal(base, ours):
        raise SystemExit(f"margins differ from Booster.predict: max {np.abs(base - ours).max():.3g}")
    timings: dict[str, list[float]] = {"booster": [], "pd": [], "pd_and_contributions": []}
    for _ in range(runs):
        for name, fn in (("booster", lambda: booster.predict(X, raw_score=True)),
                         ("pd", lambda: bundle.model_pd(X)),
                         ("pd_and_contributions", lambda: bundle.explain(X))):
            start = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - start)
    return {"rows": len(X), "trees": booster.num_trees(), "compile_s": compile_s,
            "seconds": {k: statistics.median(v) for k, v in timings.items()}, "all": timings, "peak_gb": peak_gb()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    feature_bench.book_arguments(p)
    p.add_argument("--champion-customers", type=int, default=50_000, help="customers the champion is trained on")
    step_arguments(p, "--book", "--as-of", "--home", "--out", "--config-file")
    args = p.parse_args(argv)
    if args.step == "rescore":
        print(json.dumps(_rescore(Path(args.book), args.as_of, Path(args.home), Path(args.out), args.config_file)))
        return 0
    if args.step == "scoring":
        print(json.dumps(_scoring(Path(args.out), Path(args.home), args.runs)))
        return 0

    def say(msg: str) -> None:
        print(msg, flush=True)

    cut, _full, cut_as_of, _ = feature_bench._prepare(args, say)
    trained = trained_workdir(args.champion_customers)
    home = Path(args.workdir) / f"rescore-home-{trained.name.removeprefix('riskcast-serving-bench-')}"
    if not home.exists():  # a copy: the rescore rewrites the order-entry store of its work directory
        shutil.copytree(trained, home)
    out_dir = Path(args.workdir) / "rescore-out"
    decisions_only = Path(args.workdir) / "rescore-decisions-only.toml"
    own = (home / "riskcast.toml").read_text() if (home / "riskcast.toml").exists() else ""
    if "[rescore]" in own:
        raise SystemExit(f"{home / 'riskcast.toml'} has a [rescore] section of its own: the baseline's would clash")
    decisions_only.write_text(own + "\n[rescore]\nreceivables = false\n")

    def rescore(config: Path | None) -> dict:
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        start = time.perf_counter()
        r = run_step(__file__, "rescore", "--book", str(cut), "--as-of", cut_as_of, "--home", str(home),
                     "--out", str(out_dir / "scored.parquet"), *(["--config-file", str(config)] if config else []))
        r["seconds"] = time.perf_counter() - start
        return r

    runs, baseline = [], []
    for i in range(args.runs):  # alternating which goes first, so that neither always meets a warmer machine
        order = (decisions_only, None) if i % 2 else (None, decisions_only)
        if i == args.runs - 1:
            order = (decisions_only, None)  # the last run is a full one: its files are the scoring step's
        for config in order:
            r = rescore(config)
            (runs if config is None else baseline).append(r)
            say(f"  rescore run {i + 1}/{args.runs}{'' if config is None else ' without the receivables steps'}: "
                f"{r['seconds']:.1f} s, peak {r['peak_gb']:.2f} GB")
    scoring = run_step(__file__, "scoring", "--home", str(home), "--out", str(out_dir / "scored.parquet"),
                       "--runs", str(args.runs))

    secs = statistics.median(r["seconds"] for r in runs)
    peak = statistics.median(r["peak_gb"] for r in runs)
    r = runs[0]
    say("")
    say(f"book: {args.customers:,} customers cut on {cut_as_of} at {args.invoices:,} invoices: "
        f"{r['customers_in']:,} customers in = {r['scored']:,} scored + {r['rejected']:,} rejected; "
        f"champion of {scoring['trees']} trees trained on {args.champion_customers:,} customers; "
        f"median of {args.runs} run(s), each in a fresh process")
    met = "met" if secs <= TARGET_SECONDS and peak <= TARGET_GB else "MISSED"
    say(f"riskcast rescore, raw tables to the scored file with reasons: {secs:.1f} s, peak {peak:.2f} GB "
        f"(target <= {TARGET_SECONDS:.0f} s and <= {TARGET_GB:.0f} GB: {met}); runs: "
        + ", ".join(f"{x['seconds']:.1f} s" for x in runs))
    plain = statistics.median(r["seconds"] for r in baseline)
    added = (secs - plain) / plain
    say(f"the receivables steps (aging and DSO, open invoices, collections worklist and stop list, watchlist): "
        f"{secs:.1f} s against {plain:.1f} s for the decisions alone (runs: "
        + ", ".join(f"{x['seconds']:.1f} s" for x in baseline) + f"): {added:+.1%} "
        f"(target <= {TARGET_RECEIVABLES_SHARE:.0%}: {'met' if added <= TARGET_RECEIVABLES_SHARE else 'MISSED'})")
    s = scoring["seconds"]
    base = s["booster"]
    say(f"scoring {scoring['rows']:,} feature rows (trees compiled once per model: {scoring['compile_s']:.1f} s; "
        f"margins equal to Booster.predict's):")
    for name, label in (("booster", "Booster.predict, raw score (baseline)"), ("pd", "riskcast PD (compiled, calibrated)"),
                        ("pd_and_contributions", "riskcast PD + every feature's contribution")):
        target = ""
        if name == "pd":
            target = f"  target >= {TARGET_SPEEDUP}x: {'met' if base / s[name] >= TARGET_SPEEDUP else 'MISSED'}"
        say(f"  {label:44s} {s[name]:6.2f} s {scoring['rows'] / s[name]:11,.0f} rows/s {base / s[name]:6.2f}x{target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
