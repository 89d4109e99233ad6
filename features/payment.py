"""Payment behaviour from invoices, as the ledger stood on ``as_of``.

An invoice is known from its issue date; it counts as paid only if it was paid in full by
``as_of``; an invoice still open past its due date is late by ``as_of - due_date`` days so far.
A part payment (``paid_amount`` below the amount) lowers what is open from its paid date on and
is a payment for "days since payment", but the rest keeps the invoice open and late. A dispute
counts from the day it was raised. Dates count at day resolution: whatever happened on
``as_of`` itself is known on it.

A book holds tens of millions of invoices and a training set asks for the same book on many
dates, so the invoices are reduced once to an ``InvoiceLedger`` (customer codes and day
numbers) and every date is a pass of ``np.bincount`` over it, chunk by chunk: no sort, no
group-by, and memory bounded by a chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

COLUMNS = ["invoices_12m", "dbt_mean_3m", "dbt_mean_12m", "dbt_max_3m", "dbt_max_12m", "dbt_weighted_3m",
           "dbt_weighted_12m", "share_late_30_12m", "share_late_60_12m", "share_late_90_12m", "dispute_rate_12m",
           "amount_12m", "open_receivables", "overdue_amount_open", "max_days_overdue_open", "overdue_share_open",
           "dbt_trend", "months_since_late", "days_since_payment", "unpaid_share_due_60d", "overdue_invoices_open",
           "overdue_beyond_usual_days", "overdue_invoices_undisputed", "overdue_days_undisputed_max",
           "overdue_days_undisputed_sum", "second_oldest_overdue_days", "overdue_since_payment",
           "max_days_late_24m"]

_OPEN = np.iinfo(np.int32).max  # paid day of an invoice never paid
_NONE = np.iinfo(np.int32).min
_CHUNK = 4_000_000
_MONTH_DAYS = 30.4375


def _days(values: pd.Series, missing: int) -> np.ndarray:
    """Dates as whole days since 1970 (int32), ``missing`` where there is none."""
    arr = values.to_numpy(dtype="datetime64[ns]", na_value=np.datetime64("NaT"))
    nat = np.isnat(arr)
    days = arr.astype("datetime64[D]").astype(np.int64)
    days[nat] = missing
    return days.astype(np.int32)


def _factorize(ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """int32 codes and the object array of distinct ids; Arrow strings are encoded in Arrow,
    which hashes tens of millions of ids without making a Python object for each."""
    if ids.dtype == pd.StringDtype("pyarrow"):
        import pyarrow as pa

        arr = pa.array(ids.array)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        enc = arr.dictionary_encode()
        return (enc.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False),
                np.asarray(enc.dictionary.to_pylist(), dtype=object))
    codes, uniques = pd.factorize(ids, sort=False)
    return codes.astype(np.int32), np.asarray(uniques, dtype=object)


def _day(ts: pd.Timestamp) -> int:
    return int(np.datetime64(pd.Timestamp(ts).normalize(), "D").astype(np.int64))


@dataclass(frozen=True, eq=False)
class InvoiceLedger:
    """The invoices reduced to what payment features need, one array per column.

    ``code`` indexes ``customers``; days are days since 1970 with ``paid = _OPEN`` until paid in
    full, ``raised = _OPEN`` for an invoice never disputed. ``part`` is what a part payment paid
    on ``part_day`` (None when the ledger has no part payment: most have none).
    """

    customers: np.ndarray
    code: np.ndarray
    issue: np.ndarray
    due: np.ndarray
    paid: np.ndarray
    amount: np.ndarray
    raised: np.ndarray
    part: np.ndarray | None = None
    part_day: np.ndarray | None = None

    @classmethod
    def from_invoices(cls, invoices: pd.DataFrame) -> "InvoiceLedger":
        """From a validated ``invoices`` table (customer ids as str, category or Arrow strings);
        facts without a date are dated as ``data.ledger.date_undated`` says."""
        from riskcast.data.ledger import ROUNDING, date_undated, received

        invoices, _ = date_undated(invoices)
        codes, uniques = _factorize(invoices["customer_id"])
        paid = _days(invoices["paid_date"], _OPEN)
        # copies, not views: a view would keep the table's whole column block alive
        amount = np.array(invoices["amount"], dtype=np.float64, copy=True)
        paid_amount = invoices["paid_amount"].to_numpy(dtype=np.float64, na_value=np.nan)
        short = amount - received(amount, paid_amount, paid != _OPEN) > ROUNDING
        part = part_day = None
        if short.any():
            part = np.where(short, paid_amount, 0.0)
            part_day = np.where(short, paid, _OPEN).astype(np.int32)
            paid = np.where(short, _OPEN, paid).astype(np.int32)
        return cls(
            customers=uniques,
            code=codes,
            issue=_days(invoices["issue_date"], _OPEN),
            due=_days(invoices["due_date"], _OPEN),
            paid=paid,
            amount=amount,
            raised=_days(invoices["dispute_date"], _OPEN),
            part=part,
            part_day=part_day,
        )

    def __len__(self) -> int:
        return int(self.code.size)

    def invoiced_by(self, as_of: pd.Timestamp) -> np.ndarray:
        """The customers with an invoice issued on or before ``as_of``."""
        seen = np.bincount(self.code[self.issue <= _day(as_of)], minlength=self.customers.size) > 0
        return self.customers[seen]

    def order_pattern(self, as_of: pd.Timestamp, recent: int = 3, months: int = 12) -> pd.DataFrame:
        """Per customer invoiced in the ``recent`` + ``months`` calendar months counted back
        from ``as_of``: its monthly orders over the ``recent`` months (``orders_recent``), its
        monthly mean over the ``months`` before them (``orders_usual``) and in how many of
        those it bought (``months_with_orders``): the watchlist's unusual swing in orders."""
        as_of = pd.Timestamp(as_of).normalize()
        total = recent + months
        bounds = np.array([_day(as_of - pd.DateOffset(months=k)) for k in range(total, -1, -1)])
        inside = (self.issue > bounds[0]) & (self.issue <= bounds[-1])
        month = total - np.searchsorted(bounds, self.issue[inside], side="left")  # 0: the month ending on as_of
        n = self.customers.size
        flat = np.bincount(self.code[inside] * total + month, weights=self.amount[inside],
                           minlength=n * total).reshape(n, total)
        seen = flat.any(axis=1)
        before = flat[seen, recent:]
        return pd.DataFrame({"orders_recent": flat[seen, :recent].mean(axis=1).round(2),
                             "orders_usual": before.mean(axis=1).round(2),
                             "months_with_orders": (before > 0).sum(axis=1)},
                            index=pd.Index(self.customers[seen], name="customer_id"))

    def features(self, as_of: pd.Timestamp) -> pd.DataFrame:
        """Payment features per customer (index ``customer_id``) for customers with an invoice
        issued by ``as_of``."""
        as_of = pd.Timestamp(as_of).normalize()
        acc = _Sums(self.customers.size)
        today = _day(as_of)
        cut12 = _day(as_of - pd.DateOffset(months=12))
        cut3 = _day(as_of - pd.DateOffset(months=3))
        cut24 = _day(as_of - pd.DateOffset(months=24))
        for start in range(0, len(self), _CHUNK):
            acc.add(self, slice(start, start + _CHUNK), today, cut12, cut3, today - 60, cut24)
        return acc.table(self.customers, today)


class _Sums:
    """Per-customer sums, counts and maxima, accumulated over chunks of the ledger."""

    _SUMS = ("known", "issued12", "amount12", "n3", "n12", "dbt3", "dbt12", "w3", "w12", "amt3", "amt12",
             "late30", "late60", "late90", "disputed12", "open", "overdue", "n_overdue", "n60", "unpaid60")

    def __init__(self, n: int) -> None:
        self.n = n
        self.s = {k: np.zeros(n) for k in self._SUMS}
        self.max3 = np.full(n, -np.inf)
        self.max12 = np.full(n, -np.inf)
        self.max24 = np.full(n, -np.inf)  # the loyalty rule's window: longest delay, invoices due in 24 months
        self.max_overdue = np.zeros(n)
        self.max_paid12 = np.zeros(n)  # longest delay of the invoices paid in the last 12 months
        self.last_late = np.full(n, _NONE, dtype=np.int64)
        self.last_paid = np.full(n, _NONE, dtype=np.int64)
        # the open overdue invoices themselves (a few per cent of a ledger): some of their
        # features need the customer's last payment, known only once every chunk is read
        self.overdue_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [
            (np.zeros(0, np.intp), np.zeros(0, np.int64), np.zeros(0, bool))]

    def _sum(self, key: str, code: np.ndarray, weights: np.ndarray | None = None) -> None:
        self.s[key] += np.bincount(code, weights=weights, minlength=self.n)

    def add(self, led: InvoiceLedger, rows: slice, today: int, cut12: int, cut3: int, cut60: int,
            cut24: int) -> None:
        issue = led.issue[rows]
        known = issue <= today
        code = led.code[rows][known].astype(np.intp)
        issue = issue[known]
        due = led.due[rows][known]
        paid = led.paid[rows][known]
        amount = led.amount[rows][known]
        disputed = led.raised[rows][known] <= today
        # what is still owed: the amount less a part payment made by today
        owed = amount
        if led.part is not None:
            part_paid = led.part_day[rows][known] <= today
            owed = amount - np.where(part_paid, led.part[rows][known], 0.0)
            np.maximum.at(self.last_paid, code[part_paid], led.part_day[rows][known][part_paid].astype(np.int64))

        settled = paid <= today
        end = np.where(settled, paid, today)
        dbt = np.maximum(end - due, 0).astype(np.float64)
        fallen_due = due <= today
        d12 = fallen_due & (due > cut12)
        d3 = fallen_due & (due > cut3)
        i12 = issue > cut12
        open_ = ~settled
        overdue = open_ & (due < today)
        late = fallen_due & (dbt > 0)  # as seen on the day: paid late, or open past due

        self._sum("known", code)
        self._sum("issued12", code[i12])
        self._sum("amount12", code[i12], amount[i12])
        for key, m in (("3", d3), ("12", d12)):
            c, d, a = code[m], dbt[m], amount[m]
            self._sum("n" + key, c)
            self._sum("dbt" + key, c, d)
            self._sum("w" + key, c, d * a)
            self._sum("amt" + key, c, a)
            np.maximum.at(self.max3 if key == "3" else self.max12, c, d)
        d24 = fallen_due & (due > cut24)
        np.maximum.at(self.max24, code[d24], dbt[d24])
        c12, dbt12 = code[d12], dbt[d12]
        for k in (30, 60, 90):
            self._sum(f"late{k}", c12, (dbt12 > k).astype(np.float64))
        self._sum("disputed12", c12, disputed[d12].astype(np.float64))
        self._sum("open", code[open_], owed[open_])
        self._sum("overdue", code[overdue], owed[overdue])
        self._sum("n_overdue", code[overdue])
        paid12 = settled & (paid > cut12)
        np.maximum.at(self.max_paid12, code[paid12], dbt[paid12])
        np.maximum.at(self.max_overdue, code[overdue], dbt[overdue])
        self.overdue_parts.append((code[overdue], due[overdue].astype(np.int64), disputed[overdue]))
        np.maximum.at(self.last_late, code[late], due[late].astype(np.int64))
        np.maximum.at(self.last_paid, code[settled], paid[settled].astype(np.int64))
        d60 = fallen_due & (due > cut60)  # a firm that stops paying shows here first
        self._sum("n60", code[d60])
        self._sum("unpaid60", code[d60 & open_])

    def table(self, customers: np.ndarray, today: int) -> pd.DataFrame:
        s = self.s
        keep = s["known"] > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
                return np.where(den > 0, num / den, np.nan)

            mean3, mean12 = ratio(s["dbt3"], s["n3"]), ratio(s["dbt12"], s["n12"])
            cols = {
                "invoices_12m": s["issued12"],
                "dbt_mean_3m": mean3,
                "dbt_mean_12m": mean12,
                "dbt_max_3m": np.where(s["n3"] > 0, self.max3, np.nan),
                "dbt_max_12m": np.where(s["n12"] > 0, self.max12, np.nan),
                "dbt_weighted_3m": ratio(s["w3"], s["amt3"]),
                "dbt_weighted_12m": ratio(s["w12"], s["amt12"]),
                "share_late_30_12m": ratio(s["late30"], s["n12"]),
                "share_late_60_12m": ratio(s["late60"], s["n12"]),
                "share_late_90_12m": ratio(s["late90"], s["n12"]),
                "dispute_rate_12m": ratio(s["disputed12"], s["n12"]),
                "amount_12m": s["amount12"],
                "open_receivables": s["open"],
                "overdue_amount_open": s["overdue"],
                "max_days_overdue_open": self.max_overdue,
                "overdue_share_open": np.where(s["open"] > 0, s["overdue"] / s["open"], 0.0),
                "dbt_trend": mean3 - mean12,
                # months since the due date of the last invoice seen late; NaN (never late) is
                # filled by the caller, who knows how long the relationship is
                "months_since_late": np.where(self.last_late > _NONE, (today - self.last_late) / _MONTH_DAYS, np.nan),
                "days_since_payment": np.where(self.last_paid > _NONE, today - self.last_paid, np.nan),
                "unpaid_share_due_60d": ratio(s["unpaid60"], s["n60"]),
                "overdue_invoices_open": s["n_overdue"],
                # a firm that stopped paying leaves invoices open longer than it ever paid late
                "overdue_beyond_usual_days": np.where(s["n_overdue"] > 0, self.max_overdue - self.max_paid12, np.nan),
                # NaN: no invoice fell due in 24 months, so nothing shows the customer pays on time
                "max_days_late_24m": np.where(np.isfinite(self.max24), self.max24, np.nan),
            }
        cols.update(self._overdue(today))
        out = pd.DataFrame({k: np.asarray(v, dtype=np.float64)[keep] for k, v in cols.items()},
                           index=pd.Index(customers[keep], name="customer_id", dtype=object))
        return out[COLUMNS]

    def _overdue(self, today: int) -> dict[str, np.ndarray]:
        """What the open overdue invoices say of a firm that may have stopped paying.

        A disputed invoice is held back over a quarrel about the goods; an undisputed one
        left open is a sign of cash trouble, the more so the longer and the more of them. Two
        overdue invoices are a pattern where one may be an oversight; invoices falling due
        after the last payment, unpaid, are what a firm that stopped paying leaves behind."""
        n = self.n
        code, due, disputed = (np.concatenate(col) for col in zip(*self.overdue_parts))
        days = (today - due).astype(np.float64)
        und = ~disputed
        max_und = np.zeros(n)
        np.maximum.at(max_und, code[und], days[und])
        since = due > self.last_paid[code]
        return {
            "overdue_invoices_undisputed": np.bincount(code[und], minlength=n),
            "overdue_days_undisputed_max": max_und,
            "overdue_days_undisputed_sum": np.bincount(code[und], weights=days[und], minlength=n),
            "second_oldest_overdue_days": _second_largest(code, days, n),
            "overdue_since_payment": np.bincount(code[since], minlength=n),
        }


def _second_largest(code: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per code the second largest of its values (a tie counts twice); 0 with fewer than two."""
    out = np.zeros(n)
    if code.size < 2:
        return out
    order = np.lexsort((values, code))
    c, v = code[order], values[order]
    same = c[1:] == c[:-1]
    # i + 1 is its code's last position and i holds the same code: v[i] is that code's second
    i = np.flatnonzero(np.r_[~same[1:], True] & same)
    out[c[i]] = v[i]
    return out


def payment_features(invoices: pd.DataFrame | InvoiceLedger, as_of: pd.Timestamp) -> pd.DataFrame:
    """Payment features per customer (index ``customer_id``) for customers with any invoice
    issued by ``as_of``. Pass an ``InvoiceLedger`` when asking for several dates."""
    ledger = invoices if isinstance(invoices, InvoiceLedger) else InvoiceLedger.from_invoices(invoices)
    return ledger.features(as_of)
