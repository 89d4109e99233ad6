"""Feature building at book scale, against a plain pandas group-by run in the same script.

A generated book of 1,000,000 customers is cut on the day its ledger reaches 20,000,000
invoices (the book as a credit team saw it that day). On it, each step runs in a fresh
process, several times, and reports its median time and peak memory:

- ``pandas``: the payment-behaviour features as a plain pandas group-by, from the Parquet
  file (the baseline);
- ``payment``: the same features as riskcast builds them, from the same file, every row
  validated against the invoices contract;
- ``features``: the whole feature table (all five raw tables read and validated, financial,
  payment and industry features, registry order and ranges);
- ``store``: that table written to the order-entry store, then random single-customer
  lookups against a fresh SQLite connection per lookup and a pandas frame indexed by id.

The two payment tables are compared value by value before any figure is printed.

    python benchmarks/features.py                       # 1M customers, 20M invoices, 3 runs
    python benchmarks/features.py --customers 100000 --invoices 2000000 --runs 1

The book is generated once into ``--workdir`` (default: the system's temporary folder) and
reused by later runs; ``--full`` also times the uncut book (three years of invoices).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _work import peak_gb, run_step, step_arguments

from riskcast.env import offline_environment

offline_environment()  # before anything imports MLflow, BentoML or Evidently; children inherit it

TARGETS = {"payment": (30.0, 4.0), "features": (60.0, None)}  # seconds, GB


# -- the baseline ----------------------------------------------------------------------------

def pandas_payment(invoices, as_of):
    """Payment features per customer with plain pandas: masks, then one group-by."""
    import pandas as pd

    inv = invoices[invoices["issue_date"] <= as_of]
    paid = inv["paid_date"].notna() & (inv["paid_date"] <= as_of)
    dbt = ((inv["paid_date"].where(paid, as_of) - inv["due_date"]).dt.days).clip(lower=0).astype("float64")
    due = inv["due_date"] <= as_of
    due_12 = due & (inv["due_date"] > as_of - pd.DateOffset(months=12))
    due_3 = due & (inv["due_date"] > as_of - pd.DateOffset(months=3))
    due_24 = due & (inv["due_date"] > as_of - pd.DateOffset(months=24))
    issued_12 = inv["issue_date"] > as_of - pd.DateOffset(months=12)
    open_amount = inv["amount"].where(~paid, 0.0)
    overdue = ~paid & (inv["due_date"] < as_of)
    frame = pd.DataFrame({
        "customer_id": inv["customer_id"],
        "issued_12": issued_12,
        "amount_issued_12": inv["amount"].where(issued_12, 0.0),
        "dbt_12": dbt.where(due_12), "dbt_3": dbt.where(due_3),
        "dbt_amount_12": (dbt * inv["amount"]).where(due_12), "dbt_amount_3": (dbt * inv["amount"]).where(due_3),
        "amount_due_12": inv["amount"].where(due_12), "amount_due_3": inv["amount"].where(due_3),
        "late30_12": (dbt > 30).where(due_12).astype("float64"),
        "late60_12": (dbt > 60).where(due_12).astype("float64"),
        "late90_12": (dbt > 90).where(due_12).astype("float64"),
        "disputed_12": inv["disputed"].where(due_12).astype("float64"),
        "last_late_due": inv["due_date"].where(due & (dbt > 0)),
        "open_amount": open_amount,
        "overdue_amount": open_amount.where(overdue, 0.0),
        "open_days_overdue": dbt.where(overdue, 0.0),
        "paid_date": inv["paid_date"].where(paid),
        "due_60": (due & (inv["due_date"] > as_of - pd.Timedelta(days=60))).astype("float64"),
        "unpaid_60": (due & (inv["due_date"] > as_of - pd.Timedelta(days=60)) & ~paid).astype("float64"),
        "overdue_n": overdue.astype("float64"),
        "paid_dbt_12": dbt.where(paid & (inv["paid_date"] > as_of - pd.DateOffset(months=12)), 0.0),
    })
    g = frame.groupby("customer_id", sort=False)
    out = pd.DataFrame({
        "invoices_12m": g["issued_12"].sum().astype("float64"),
        "dbt_mean_3m": g["dbt_3"].mean(), "dbt_mean_12m": g["dbt_12"].mean(),
        "dbt_max_3m": g["dbt_3"].max(), "dbt_max_12m": g["dbt_12"].max(),
        "dbt_weighted_3m": g["dbt_amount_3"].sum(min_count=1) / g["amount_due_3"].sum(min_count=1),
        "dbt_weighted_12m": g["dbt_amount_12"].sum(min_count=1) / g["amount_due_12"].sum(min_count=1),
        "share_late_30_12m": g["late30_12"].mean(), "share_late_60_12m": g["late60_12"].mean(),
        "share_late_90_12m": g["late90_12"].mean(), "dispute_rate_12m": g["disputed_12"].mean(),
        "amount_12m": g["amount_issued_12"].sum(), "open_receivables": g["open_amount"].sum(),
        "overdue_amount_open": g["overdue_amount"].sum(), "max_days_overdue_open": g["open_days_overdue"].max(),
        "last_late_due": g["last_late_due"].max(),
        "last_paid": g["paid_date"].max(), "due_60": g["due_60"].sum(), "unpaid_60": g["unpaid_60"].sum(),
        "overdue_invoices_open": g["overdue_n"].sum(), "paid_dbt_12": g["paid_dbt_12"].max(),
    })
    out["overdue_share_open"] = (out["overdue_amount_open"] / out["open_receivables"].where(out["open_receivables"] > 0)).fillna(0.0)
    out["dbt_trend"] = out["dbt_mean_3m"] - out["dbt_mean_12m"]
    out["months_since_late"] = (as_of - out.pop("last_late_due")).dt.days / 30.4375
    out["days_since_payment"] = (as_of - out.pop("last_paid")).dt.days.astype("float64")
    due_60, unpaid_60 = out.pop("due_60"), out.pop("unpaid_60")
    out["unpaid_share_due_60d"] = unpaid_60 / due_60.where(due_60 > 0)
    beyond = out["max_days_overdue_open"] - out.pop("paid_dbt_12")
    out["overdue_beyond_usual_days"] = beyond.where(out["overdue_invoices_open"] > 0)
    od = pd.DataFrame({"customer_id": inv["customer_id"], "days": dbt, "due": inv["due_date"],
                       "disputed": inv["disputed"]})[overdue]
    und = od[~od["disputed"]].groupby("customer_id", sort=False)["days"]
    out["overdue_invoices_undisputed"] = und.size().reindex(out.index, fill_value=0).astype("float64")
    out["overdue_days_undisputed_max"] = und.max().reindex(out.index, fill_value=0.0)
    out["overdue_days_undisputed_sum"] = und.sum().reindex(out.index, fill_value=0.0)
    second = od.sort_values("days").groupby("customer_id", sort=False)["days"].nth(-2)
    out["second_oldest_overdue_days"] = pd.Series(second.to_numpy(), index=od.loc[second.index, "customer_id"]) \
        .reindex(out.index, fill_value=0.0)
    last_paid = od["customer_id"].map(g["paid_date"].max())
    since = od[last_paid.isna() | (od["due"] > last_paid)].groupby("customer_id", sort=False).size()
    out["overdue_since_payment"] = since.reindex(out.index, fill_value=0).astype("float64")
    out["max_days_late_24m"] = dbt.where(due_24).groupby(inv["customer_id"], sort=False).max().reindex(out.index)
    return out


# -- steps, each run in its own process --------------------------------------------------------


def step(name: str, book: Path, as_of: str, out: Path | None, config: str | None = None) -> dict:
    import pandas as pd

    if name == "store":
        return _store_lookups(book, out)
    as_of_ts = pd.Timestamp(as_of)
    marks: dict[str, float] = {}
    start = time.perf_counter()
    if name == "pandas":
        inv = pd.read_parquet(book / "invoices.parquet",
                              columns=["customer_id", "issue_date", "due_date", "amount", "paid_date", "disputed"])
        marks["read"] = time.perf_counter() - start
        result = pandas_payment(inv, as_of_ts)
        rows = len(inv)
    elif name == "payment":
        from riskcast.data.io import read_any
        from riskcast.data.schema import INVOICES, validate_table
        from riskcast.features.payment import InvoiceLedger

        raw = read_any(book / "invoices.parquet", compact=True)
        marks["read"] = time.perf_counter() - start
        inv = validate_table(INVOICES, raw)
        del raw
        marks["validate"] = time.perf_counter() - start
        ledger = InvoiceLedger.from_invoices(inv)
        rows = len(inv)
        del inv
        marks["ledger"] = time.perf_counter() - start
        result = ledger.features(as_of_ts)
    elif name == "features":
        from riskcast.data.io import read_tables
        from riskcast.features.build import features_at
        from riskcast.features.registry import default_registry

        tables = read_tables(book, with_truth=False)
        marks["read"] = time.perf_counter() - start
        rows = len(tables.invoices)
        result = features_at(tables, as_of_ts, default_registry())
    elif name == "generate":
        from riskcast.config import GeneratorConfig
        from riskcast.data.synthetic import write_book

        cfg = json.loads(config or "{}")
        written = write_book(GeneratorConfig(**cfg), book)
        return {"seconds": time.perf_counter() - start, "peak_gb": peak_gb(),
                "rows": written["invoices"][1], "customers": written["customers"][1]}
    else:
        raise SystemExit(f"unknown step {name!r}")
    seconds = time.perf_counter() - start
    if out is not None:
        result.reset_index().to_parquet(out)
    return {"seconds": seconds, "peak_gb": peak_gb(), "rows": rows, "customers": len(result),
            "marks": {k: round(v, 2) for k, v in marks.items()}}


def _store_lookups(features_file: Path, store_file: Path, lookups: int = 20_000) -> dict:
    """Write the order-entry store from a feature table, then look customers up at random:
    through ``FeatureStore`` and, as the baselines, through a fresh SQLite connection per
    lookup and through a pandas frame indexed by customer id."""
    import sqlite3

    import numpy as np
    import pandas as pd

    from riskcast.features.store import TABLE, FeatureStore, write_store

    feats = pd.read_parquet(features_file)
    start = time.perf_counter()
    write_store(feats, store_file, "benchmark")
    written = time.perf_counter() - start
    ids = feats["customer_id"].to_numpy()[np.random.default_rng(0).integers(0, len(feats), lookups)].tolist()
    frame = feats.set_index("customer_id")

    def fresh_connection(cid: str):
        con = sqlite3.connect(f"file:{store_file}?mode=ro", uri=True)
        try:
            return con.execute(f"SELECT * FROM {TABLE} WHERE customer_id = ?", (cid,)).fetchone()
        finally:
            con.close()

    store = FeatureStore(store_file)
    timings = {}
    for label, fn in (("sqlite, connection per lookup", fresh_connection),
                      ("pandas .loc", lambda cid: frame.loc[cid].to_dict()),
                      ("FeatureStore.get", store.get)):
        lat = np.empty(len(ids))
        for i, cid in enumerate(ids):
            t = time.perf_counter_ns()
            if fn(cid) is None:
                raise SystemExit(f"{label}: customer {cid} not found")
            lat[i] = time.perf_counter_ns() - t
        timings[label] = (float(np.median(lat)) / 1e3, float(np.percentile(lat, 99)) / 1e3)
    return {"seconds": written, "peak_gb": peak_gb(), "rows": len(feats), "customers": len(feats),
            "lookups": timings}


def _run(name: str, book: Path, as_of: str = "", out: Path | None = None, config: str | None = None) -> dict:
    args = ["--book", str(book), "--as-of", as_of]
    if out is not None:
        args += ["--out", str(out)]
    if config is not None:
        args += ["--config", config]
    return run_step(__file__, name, *args)


# -- preparing the book ------------------------------------------------------------------------

def _prepare(args: argparse.Namespace, say) -> tuple[Path, Path, str, str]:
    """The generated book (cached) and its cut at ``args.invoices`` invoices, with as-of dates."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from riskcast.data.io import read_tables, write_tables

    root = Path(args.workdir) / f"book-{args.customers}-y{args.years}-s{args.seed}"
    full = root / "full"
    if not (full / "invoices.parquet").exists():
        say(f"generating {args.customers:,} customers over {args.years} years into {full} ...")
        cfg = json.dumps({"customers": args.customers, "years": args.years, "seed": args.seed})
        r = _run("generate", full, config=cfg)
        say(f"  generator: {r['seconds']:.1f} s, peak {r['peak_gb']:.2f} GB, {r['rows']:,} invoices")
    issue = pq.read_table(full / "invoices.parquet", columns=["issue_date"]).column(0).to_numpy()
    full_as_of = pd.Timestamp(issue.max()).normalize() + pd.Timedelta(days=1)
    if args.invoices >= issue.size:
        raise SystemExit(f"--invoices {args.invoices:,}: the book holds only {issue.size:,}")
    cut_as_of = pd.Timestamp(np.partition(issue, args.invoices - 1)[args.invoices - 1]).normalize()
    del issue
    cut = root / f"cut-{args.invoices}"
    if not (cut / "invoices.parquet").exists():
        say(f"cutting the book on {cut_as_of.date()} ...")
        write_tables(read_tables(full).as_seen_on(cut_as_of), cut)
    return cut, full, str(cut_as_of.date()), str(full_as_of.date())


def _compare(ours: Path, theirs: Path) -> str:
    import numpy as np
    import pandas as pd

    a = pd.read_parquet(ours).set_index("customer_id").sort_index()
    b = pd.read_parquet(theirs)
    b["customer_id"] = b["customer_id"].astype(object)
    b = b.set_index("customer_id").sort_index()[a.columns]
    if not a.index.equals(b.index):
        raise SystemExit("the two payment tables cover different customers")
    for col in a.columns:
        if not np.allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=1e-9, atol=1e-9, equal_nan=True):
            raise SystemExit(f"the two payment tables disagree on {col}")
    return f"{len(a):,} customers x {a.shape[1]} features agree"


def _median(runs: list[dict]) -> dict:
    out = dict(runs[0])
    out["seconds"] = statistics.median(r["seconds"] for r in runs)
    out["peak_gb"] = statistics.median(r["peak_gb"] for r in runs)
    out["runs"] = len(runs)
    return out


def book_arguments(p: argparse.ArgumentParser) -> None:
    """The book (``_prepare``) and the runs, shared with the rescoring benchmark."""
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--invoices", type=int, default=20_000_000)
    p.add_argument("--years", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "riskcast-bench"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    book_arguments(p)
    p.add_argument("--full", action="store_true", help="also time the uncut book")
    step_arguments(p, "--book", "--as-of", "--out", "--config")
    args = p.parse_args(argv)
    if args.step:
        print(json.dumps(step(args.step, Path(args.book), args.as_of, Path(args.out) if args.out else None,
                              args.config)))
        return 0

    def say(msg: str) -> None:
        print(msg, flush=True)

    cut, full, cut_as_of, full_as_of = _prepare(args, say)
    work = Path(args.workdir)
    results: dict[str, dict] = {}
    for name in ("pandas", "payment", "features"):
        runs = []
        for i in range(args.runs):
            out = work / f"{name}.parquet" if i == 0 else None
            runs.append(_run(name, cut, cut_as_of, out))
            say(f"  {name} run {i + 1}/{args.runs}: {runs[-1]['seconds']:.1f} s, peak {runs[-1]['peak_gb']:.2f} GB "
                f"{runs[-1].get('marks', '')}")
        results[name] = _median(runs)
    agreement = _compare(work / "payment.parquet", work / "pandas.parquet")
    lookups = _run("store", work / "features.parquet", out=work / "store.sqlite")

    base = results["pandas"]
    say("")
    say(f"book: {args.customers:,} customers, cut on {cut_as_of} at {results['payment']['rows']:,} invoices; "
        f"median of {args.runs} run(s), each in a fresh process; {agreement}")
    say(f"{'step':34s} {'seconds':>8s} {'peak GB':>8s} {'speed vs pandas':>16s} {'memory vs pandas':>17s}  target")
    for name, label in (("pandas", "payment features, pandas group-by"), ("payment", "payment features, riskcast"),
                        ("features", "whole feature table, riskcast")):
        r = results[name]
        secs, mem = TARGETS.get(name, (None, None))
        target = "" if secs is None else (f"<= {secs:.0f} s" + (f", <= {mem:.0f} GB" if mem else "")
                                          + (" met" if r["seconds"] <= secs and (mem is None or r["peak_gb"] <= mem)
                                             else " MISSED"))
        say(f"{label:34s} {r['seconds']:8.1f} {r['peak_gb']:8.2f} {base['seconds'] / r['seconds']:15.2f}x "
            f"{r['peak_gb'] / base['peak_gb']:16.2f}x  {target}")
    say("")
    say(f"order-entry store: {lookups['rows']:,} customers written to SQLite in {lookups['seconds']:.1f} s; "
        f"one customer's features, 20,000 random lookups, speed against a connection per lookup:")
    base_us = lookups["lookups"]["sqlite, connection per lookup"][0]
    for label, (median_us, p99_us) in lookups["lookups"].items():
        say(f"  {label:32s} median {median_us:7.1f} us  p99 {p99_us:7.1f} us  {base_us / median_us:6.2f}x")
    if args.full:
        say("")
        for name in ("payment", "features"):
            runs = [_run(name, full, full_as_of) for _ in range(args.runs)]
            r = _median(runs)
            say(f"uncut book ({r['rows']:,} invoices, as of {full_as_of}): {name} {r['seconds']:.1f} s, "
                f"peak {r['peak_gb']:.2f} GB {r.get('marks', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
