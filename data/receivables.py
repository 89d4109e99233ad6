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

from .ledger import days_past_due, open_left

#: how far back the count-back DSO walks before it calls the receivables older than sales
COUNTBACK_MONTHS = 12


def bucket_labels(buckets: tuple[int, ...]) -> list[str]:
    """``current``, then one label per bucket of days past due, the last open-ended."""
    out, lo = ["current"], 1
    for hi in buckets:
        out.append(f"{lo}-{hi}")
        lo = hi + 1
    return out + [f"{buckets[-1]}+"]


def _bucket_of(days_past_due: np.ndarray, buckets: tuple[int, ...]) -> np.ndarray:
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
    which = _bucket_of(dpd, buckets)
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
    by_bucket = np.bincount(_bucket_of(o.days_past_due, buckets), weights=o.left, minlength=len(labels))
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
            f"{dso(book['add'])}; collection effectiveness {cei} over {book['cei_days']} days"]
