"""Receivables on a date, from the invoices alone: aging by days past due, DSO by the count-back
and the simple method, average days delinquent and the collection effectiveness index.

Definitions (each per customer and for the book, at ``as_of``):

- **open receivables**: what is left of every invoice issued by ``as_of`` and not paid in full
  by then (``ledger.open_left``); **aged** by days past due into ``current`` (not yet due)
  and the configured buckets (default 1-30, 31-60, 61-90, 90+). The buckets add up to the open
  receivables.
- **count-back DSO**: the days of sales the open receivables stand for, counted back month by
  month from ``as_of``: each month's credit sales that the receivables cover add the month's
  days; the month they run out in adds its share. Counted back at most
  ``COUNTBACK_MONTHS``; receivables beyond that many months of sales (or with no sales) give
  ``inf``. It follows the receivables, not the average of a window, so a month of heavy sales
  does not hide slow payment.
- **simple DSO**: open receivables / credit sales of the last ``days`` x ``days``.
- **average days delinquent** (ADD): DSO less the best possible DSO, i.e. the overdue part of
  the receivables over the same sales: overdue / sales x days (by the simple method's window).
- **collection effectiveness index** over (start, end]: (receivables at start + sales in the
  period - receivables at end) / (receivables at start + sales in the period - current
  receivables at end): the share of what could be collected that was.

Everything is column arithmetic over the invoices (masks, ``bincount`` by customer code): a
book of 20 million invoices is aged in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .ledger import ROUNDING, days_past_due, open_left, received

#: how far back the count-back DSO walks before it calls the receivables older than sales
COUNTBACK_MONTHS = 12


def bucket_labels(buckets: tuple[int, ...]) -> list[str]:
    """``current``, then one label per bucket of days past due, the last open-ended."""
    out, lo = ["current"], 1
    for hi in buckets:
        out.append(f"{lo}-{hi}")
        lo = hi + 1
    return out + [f"{buckets[-1]}+"]


def bucket_of(days_past_due: np.ndarray, buckets: tuple[int, ...]) -> np.ndarray:
    """0 for current, k for the k-th bucket of days past due."""
    return np.searchsorted(np.asarray((0, *buckets)), days_past_due, side="left")




@dataclass(frozen=True)
class _Open:
    """The invoices open on a date: positions, what is left, days past due."""

    where: np.ndarray
    left: np.ndarray
    days_past_due: np.ndarray


def _open(invoices: pd.DataFrame, as_of: pd.Timestamp) -> _Open:
    where, left = open_left(invoices, as_of)
    dpd = days_past_due(invoices["due_date"].to_numpy(dtype="datetime64[ns]")[where], as_of)
    return _Open(where, left, dpd)


def aging(open_inv: pd.DataFrame, buckets: tuple[int, ...]) -> pd.DataFrame:
    """Per customer, open receivables by bucket of days past due and in all (``open``), from
    a frame of open invoices (``ledger.open_invoices``: customer_id, open_amount, days_past_due)."""
    codes, ids = pd.factorize(open_inv["customer_id"], sort=True)
    return _aged(codes, len(ids), open_inv["open_amount"].to_numpy(dtype=float),
                 open_inv["days_past_due"].to_numpy(), buckets, pd.Index(ids, name="customer_id"))


def _aged(codes: np.ndarray, n: int, amount: np.ndarray, dpd: np.ndarray, buckets: tuple[int, ...],
          index: pd.Index) -> pd.DataFrame:
    labels = bucket_labels(buckets)
    which = bucket_of(dpd, buckets)
    sums = np.bincount(codes * len(labels) + which, weights=amount, minlength=n * len(labels)).reshape(n, len(labels))
    table = pd.DataFrame(sums, index=index, columns=labels)
    table["open"] = sums.sum(axis=1)
    return table.round(2)


def _month_days(as_of: pd.Timestamp, months: int) -> tuple[np.ndarray, np.ndarray]:
    """The bounds of each month counted back from ``as_of`` (oldest first, ``months`` + 1 of
    them) and each month's days, the newest first."""
    ends = [as_of - pd.DateOffset(months=k) for k in range(months + 1)]
    days = np.array([(ends[k] - ends[k + 1]).days for k in range(months)], dtype=float)
    return np.array(ends[::-1], dtype="datetime64[ns]"), days


def _monthly(codes: np.ndarray, n: int, issue: np.ndarray, amount: np.ndarray, as_of: pd.Timestamp,
             months: int) -> np.ndarray:
    """Credit sales per customer code and month counted back from ``as_of`` (column 0: the
    month ending on it)."""
    bounds, _ = _month_days(as_of, months)
    inside = (issue > bounds[0]) & (issue <= bounds[-1])
    pos = np.searchsorted(bounds, issue[inside], side="left") - 1   # oldest first
    month = months - 1 - pos
    flat = np.bincount(codes[inside] * months + month, weights=amount[inside], minlength=n * months)
    return flat.reshape(n, months)


def _countback(left: np.ndarray, sales: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Count-back DSO of each row: ``left`` receivables over ``sales`` by month (newest first)."""
    covered = np.cumsum(sales, axis=1)
    before = covered - sales                                # sales of the newer months
    full = covered <= left[:, None] + 1e-9                  # months the receivables cover whole
    part = ~full & (before < left[:, None])                 # the month they run out in
    share = np.where(part, (left[:, None] - before) / np.where(sales > 0, sales, 1.0), 0.0)
    out = (full * days).sum(axis=1) + (share * days).sum(axis=1)
    return np.round(np.where(left <= 0.005, 0.0, np.where(covered[:, -1] + 1e-9 < left, np.inf, out)), 1)


def receivables_at(invoices: pd.DataFrame, as_of: pd.Timestamp, buckets: tuple[int, ...] = (30, 60, 90),
                   days: int = 90) -> pd.DataFrame:
    """Per customer with open receivables or sales in the last 12 months: the aging, DSO by
    both methods, average days delinquent and the ``days`` window's sales."""
    as_of = pd.Timestamp(as_of)
    codes, ids = pd.factorize(invoices["customer_id"], sort=True)
    n = len(ids)
    o = _open(invoices, as_of)
    aged = _aged(codes[o.where], n, o.left, o.days_past_due, buckets, pd.Index(ids, name="customer_id"))
    issue = invoices["issue_date"].to_numpy(dtype="datetime64[ns]")
    amount = invoices["amount"].to_numpy(dtype=float)
    window = (issue > np.datetime64(as_of - pd.Timedelta(days=days), "ns")) & (issue <= np.datetime64(as_of, "ns"))
    aged["sales"] = np.round(np.bincount(codes[window], weights=amount[window], minlength=n), 2)
    monthly = _monthly(codes, n, issue, amount, as_of, COUNTBACK_MONTHS)
    per_day = aged["sales"].to_numpy() / days
    total, overdue = aged["open"].to_numpy(), (aged["open"] - aged["current"]).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        aged["dso_simple"] = np.where(total <= 0.005, 0.0, total / per_day).round(1)
        aged["add"] = np.where(overdue <= 0.005, 0.0, overdue / per_day).round(1)
    aged["dso_countback"] = _countback(total, monthly, _month_days(as_of, COUNTBACK_MONTHS)[1])
    active = (total > 0.005) | (monthly.sum(axis=1) > 0)
    return aged[active]


def book_receivables(invoices: pd.DataFrame, as_of: pd.Timestamp, buckets: tuple[int, ...] = (30, 60, 90),
                     dso_days: int = 90, cei_days: int = 90) -> dict:
    """The book's aging (amounts and shares), DSO by both methods, ADD and the collection
    effectiveness index of the ``cei_days`` before ``as_of``: the book's summed receivables
    over its summed sales."""
    as_of = pd.Timestamp(as_of)
    labels = bucket_labels(buckets)
    o = _open(invoices, as_of)
    by_bucket = np.bincount(bucket_of(o.days_past_due, buckets), weights=o.left, minlength=len(labels))
    total = float(by_bucket.sum())
    issue = invoices["issue_date"].to_numpy(dtype="datetime64[ns]")
    amount = invoices["amount"].to_numpy(dtype=float)
    at = np.datetime64(as_of, "ns")
    sales = float(amount[(issue > np.datetime64(as_of - pd.Timedelta(days=dso_days), "ns")) & (issue <= at)].sum())
    monthly = _monthly(np.zeros(len(issue), dtype=np.int64), 1, issue, amount, as_of, COUNTBACK_MONTHS)
    countback = float(_countback(np.array([total]), monthly, _month_days(as_of, COUNTBACK_MONTHS)[1])[0])
    return {"as_of": str(as_of.date()), "open": round(total, 2),
            "aging": {k: round(float(v), 2) for k, v in zip(labels, by_bucket)},
            "aging_share": {k: (round(float(v) / total, 4) if total else 0.0) for k, v in zip(labels, by_bucket)},
            "customers_with_open": int(invoices["customer_id"].iloc[o.where].nunique()),
            "sales_window_days": dso_days, "sales": round(sales, 2),
            "dso_countback": countback,
            "dso_simple": round(total / sales * dso_days, 1) if sales else None,
            "add": round((total - float(by_bucket[0])) / sales * dso_days, 1) if sales else None,
            "cei_days": cei_days,
            "cei": collection_effectiveness(invoices, as_of - pd.Timedelta(days=cei_days), as_of, o)}


def collection_effectiveness(invoices: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp,
                             at_end: _Open | None = None) -> float | None:
    """The collection effectiveness index over (start, end] for the invoices given (a customer's
    or the book's); None when nothing could be collected. ``at_end``: the invoices open on
    ``end``, when the caller has them."""
    begin = float(open_left(invoices, start)[1].sum())
    issue = invoices["issue_date"].to_numpy(dtype="datetime64[ns]")
    inside = (issue > np.datetime64(pd.Timestamp(start), "ns")) & (issue <= np.datetime64(pd.Timestamp(end), "ns"))
    sales = float(invoices["amount"].to_numpy(dtype=float)[inside].sum())
    o = at_end if at_end is not None else _open(invoices, end)
    ending, current = float(o.left.sum()), float(o.left[o.days_past_due <= 0].sum())
    collectable = begin + sales - current
    return None if collectable <= 0.005 else round((begin + sales - ending) / collectable, 4)


@dataclass(frozen=True)
class PaymentDays:
    """The invoices as day numbers (days since 1970): issued, due, paid in full (``NEVER``
    while not), and a part payment's amount and day (None when the ledger has none); the
    customer code of each and the day each customer first defaulted (``NEVER``: not)."""

    issue: np.ndarray
    due: np.ndarray
    full: np.ndarray
    amount: np.ndarray
    part: np.ndarray | None
    part_day: np.ndarray | None
    code: np.ndarray | None = None
    first_default: np.ndarray | None = None

    @classmethod
    def of(cls, invoices: pd.DataFrame, defaults: pd.DataFrame | None = None) -> "PaymentDays":
        def days(col: str) -> np.ndarray:
            d = invoices[col].to_numpy(dtype="datetime64[D]")
            return np.where(np.isnat(d), NEVER, d.astype(np.int64))
        amount = invoices["amount"].to_numpy(dtype=float)
        paid = days("paid_date")
        gets = received(amount, invoices["paid_amount"].to_numpy(dtype=float, na_value=np.nan), paid != NEVER)
        short = (paid != NEVER) & (amount - gets > ROUNDING)
        code = first = None
        if defaults is not None and len(defaults):
            code, ids = pd.factorize(invoices["customer_id"])  # a lookup per customer, not per invoice
            first = first_default_days(ids, defaults)
        return cls(days("issue_date"), days("due_date"), np.where(short, NEVER, paid), amount,
                   np.where(short, gets, 0.0) if short.any() else None,
                   np.where(short, paid, NEVER) if short.any() else None, code, first)


#: the day number of a payment or default that never came
NEVER = np.iinfo(np.int32).max


def first_default_days(customers: np.ndarray | pd.Index, defaults: pd.DataFrame) -> np.ndarray:
    """Per customer of ``customers``, the day number it first defaulted on (``NEVER``: not)."""
    first = defaults.groupby("customer_id")["default_date"].min()
    per = pd.Series(pd.Index(customers).map(first)).to_numpy(dtype="datetime64[D]")
    return np.where(np.isnat(per), NEVER, per.astype(np.int64))


def loss_rates(invoices: pd.DataFrame | PaymentDays, defaults: pd.DataFrame | None, as_of: pd.Timestamp,
               buckets: tuple[int, ...] = (30, 60, 90), horizon_months: int = 12, snapshots: int = 4,
               step_months: int = 3) -> dict:
    """The provision matrix's history: at ``snapshots`` dates ``step_months`` apart, the newest
    ``horizon_months`` before ``as_of`` (so that every outcome window has closed by then), the
    receivables open by bucket of days past due, and what of them was still unpaid (or written
    off) ``horizon_months`` later: the loss rate of each bucket, pooled over the snapshots.

    With the defaults (``customer_id``, ``default_date``; or ``PaymentDays`` that hold them),
    also the observed default rate the forward adjustment compares the book's PD with: the
    share of the receivables open at a snapshot, of customers not in default then, whose
    customer defaulted within the horizon. ``invoices`` may be ``PaymentDays`` already (the
    rescore's, from the ledger it holds)."""
    d = invoices if isinstance(invoices, PaymentDays) else PaymentDays.of(invoices, defaults)
    as_of = pd.Timestamp(as_of).normalize()
    labels = bucket_labels(buckets)
    opened, lost = np.zeros(len(labels)), np.zeros(len(labels))
    base = defaulted = 0.0
    dates = []

    def left_on(rows: np.ndarray, day: int) -> np.ndarray:
        """What is left of ``rows`` on ``day``, of invoices not paid in full by then."""
        left = d.amount[rows]
        if d.part is not None:
            left = left - np.where(d.part_day[rows] <= day, d.part[rows], 0.0)
        return left

    for k in range(snapshots):
        snap = as_of - pd.DateOffset(months=horizon_months + k * step_months)
        s = int(np.datetime64(snap, "D").astype(np.int64))
        e = int(np.datetime64(snap + pd.DateOffset(months=horizon_months), "D").astype(np.int64))
        rows = np.flatnonzero((d.issue <= s) & (d.full > s))
        left = left_on(rows, s)
        keep = left > ROUNDING
        rows, left = rows[keep], left[keep]
        if not rows.size:
            continue
        dates.append(str(snap.date()))
        still = np.where(d.full[rows] > e, left_on(rows, e), 0.0)
        which = bucket_of(np.maximum(s - d.due[rows], 0), buckets)
        opened += np.bincount(which, weights=left, minlength=len(labels))
        lost += np.bincount(which, weights=np.where(still > ROUNDING, still, 0.0), minlength=len(labels))
        if d.first_default is not None:
            first = d.first_default[d.code[rows]]
            sound = first > s                      # not in default on the snapshot
            base += float(left[sound].sum())
            defaulted += float(left[sound & (first <= e)].sum())
    rates = {k: (round(float(lo / op), 6) if op > ROUNDING else None) for k, op, lo in zip(labels, opened, lost)}
    return {"snapshots": dates, "horizon_months": horizon_months,
            "open": {k: round(float(v), 2) for k, v in zip(labels, opened)},
            "lost": {k: round(float(v), 2) for k, v in zip(labels, lost)}, "loss_rates": rates,
            "observed_default_rate": round(defaulted / base, 6) if d.first_default is not None and base > ROUNDING
            else None}


def provision(aging: dict[str, float], history: dict, book_pd: float | None) -> dict:
    """The simplified approach's expected credit loss: each bucket's receivables now x its
    historical loss rate x the forward adjustment, the book's PD (receivables-weighted, of the
    customers not in default) over the default rate observed in the history (1 without either;
    a rate stays at most 1). A bucket without history takes the rate of the nearest older one
    that has it (else of the nearest younger)."""
    labels = list(aging)
    rates = [history["loss_rates"].get(k) for k in labels]
    known = [i for i, r in enumerate(rates) if r is not None]
    observed = history.get("observed_default_rate")
    factor = book_pd / observed if book_pd is not None and observed else 1.0
    out: dict[str, dict] = {}
    for i, k in enumerate(labels):
        if rates[i] is not None:
            rate, note = rates[i], None
        elif known:
            j = max((x for x in known if x < i), default=min(known, key=lambda x: abs(x - i)))
            rate, note = rates[j], f"no history: the rate of {labels[j]}"
        else:
            rate, note = 0.0, "no history at all"
        adjusted = min(1.0, rate * factor)
        out[k] = {"open": round(float(aging[k]), 2), "loss_rate": rate, "adjusted_rate": round(adjusted, 6),
                  "provision": round(float(aging[k]) * adjusted, 2), **({"note": note} if note else {})}
    total = round(sum(b["provision"] for b in out.values()), 2)
    open_ = sum(float(v) for v in aging.values())
    return {"buckets": out, "provision": total, "share_of_open": round(total / open_, 6) if open_ > 0 else None,
            "book_pd": None if book_pd is None else round(book_pd, 6), "observed_default_rate": observed,
            "adjustment": round(factor, 4), "snapshots": history["snapshots"],
            "horizon_months": history["horizon_months"]}


def receivables_lines(book: dict) -> list[str]:
    """The book's receivables as the CLI and the rescore summary print them."""
    total = book["open"]
    aged = "  ".join(f"{k} {v:,.0f} ({book['aging_share'][k]:.1%})" for k, v in book["aging"].items())

    def dso(v: float | None) -> str:
        return "-" if v is None else ("beyond 12 months of sales" if v == float("inf") else f"{v:.1f} days")
    cei = "-" if book.get("cei") is None else f"{book['cei']:.1%}"
    return [f"receivables as of {book['as_of']}: {total:,.0f} open for {book['customers_with_open']:,} customers; "
            f"aging {aged}",
            f"DSO {dso(book.get('dso_countback'))} (count-back), {dso(book['dso_simple'])} (simple, "
            f"{book['sales_window_days']} days of sales {book['sales']:,.0f}); average days delinquent "
            f"{dso(book['add'])}; collection effectiveness {cei} over {book['cei_days']} days"] + _provision_lines(book)


def _provision_lines(book: dict) -> list[str]:
    p = book.get("provision")
    if not p:
        return []
    rates = "  ".join(f"{k} {b['adjusted_rate']:.2%}" for k, b in p["buckets"].items())
    history = (f"loss rates of {len(p['snapshots'])} snapshots from {p['snapshots'][-1]} to {p['snapshots'][0]}, "
               f"{p['horizon_months']} months on" if p["snapshots"] else "no history")
    fwd = (f"x{p['adjustment']:.2f} for the book's PD {p['book_pd']:.2%} against {p['observed_default_rate']:.2%} "
           "observed" if p["book_pd"] is not None and p["observed_default_rate"] else "no forward adjustment")
    share = "" if p["share_of_open"] is None else f" ({p['share_of_open']:.2%} of open)"
    return [f"expected credit loss, provision matrix: {p['provision']:,.0f}{share}; rates {rates} ({history}; {fwd})"
            + (f"; on the scored customers' {p['scored_customers']['open']:,.0f} open: "
               f"{p['scored_customers']['provision']:,.0f}" if p.get("scored_customers") else "")
            + (f", against PD x LGD x exposure {p['pd_lgd_expected_loss']:,.0f}"
               if p.get("pd_lgd_expected_loss") is not None else "")]
