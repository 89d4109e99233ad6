"""What an accounts-receivable ledger alone tells: its last date, its customers and its defaults.

A firm's own ledger is often all it has. The other tables are then built from it, by rules a
credit manager can check, and every row they touch is counted in ``BookNotes``:

- the ledger's **last date** is the latest day it holds a fact for (an invoice issued, paid,
  disputed or written off): the day it was exported;
- a **fact without a date** (a dispute flag with no dispute date, a part payment with no paid
  date) is dated on that last date: the export is the first day it is known to have been true,
  so it counts from then on and never in a snapshot before it (known from the start, it would
  leak the future into every training snapshot);
- a **customer** the customers table lacks (or all of them, with no customers table) is derived
  from its invoices: first trade on its first invoice, industry "unknown";
- a **default**, with no defaults table, is severe delinquency as bureaus define it for trade
  credit (``ledger_defaults``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .schema import INVOICES, UNKNOWN_INDUSTRY, absent_column

#: how many ids a note shows
EXAMPLES = 5
#: half a cent: what rounding leaves of a payment is no debt
ROUNDING = 0.005


@dataclass(frozen=True)
class BookNotes:
    """What was built from the ledger, and what could not be used, when the book was read."""

    #: raw tables the data folder does not hold
    absent: tuple[str, ...] = ()
    #: customers derived from the ledger (all of them when there is no customers table)
    derived_customers: int = 0
    #: invoices of customers missing from a given customers table (derived from the ledger)
    unknown_customers: dict[str, Any] | None = None
    #: rows of other tables whose customer is in neither the customers table nor the ledger
    left_out: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the ledger's last date and the undated facts dated on it
    undated: dict[str, Any] | None = None
    #: where the default label comes from: "defaults" (the table) or "ledger"
    label_source: str = "defaults"
    #: the same in words
    label: str = "the defaults table"

    @property
    def anything(self) -> bool:
        """Whether reading the book did more than read it: a full book as given says nothing."""
        d = self.undated or {}
        return bool(self.absent or self.derived_customers or self.unknown_customers or self.left_out
                    or d.get("disputes") or d.get("part_payments") or self.label_source != "defaults")

    def lines(self, label: bool = True) -> list[str]:
        """The notes in plain words, one line each (summaries, the model card, stderr); the
        label's line only with ``label`` (a rescore reads no label)."""
        out = []
        if self.absent:
            out.append("not in the data folder: " + ", ".join(self.absent)
                       + " (the features built from them are missing)")
        u = self.unknown_customers
        if u:
            out.append(f"{u['customers']:,} customer(s) with invoices are not in the customers table "
                       f"({u['invoices']:,} invoices, amount {u['amount']:,.2f}, open {u['open_amount']:,.2f}; "
                       f"e.g. {', '.join(u['examples'])}): derived from the ledger, industry unknown")
        elif self.derived_customers:
            out.append(f"{self.derived_customers:,} customers derived from the ledger (first trade on the first "
                       "invoice, industry unknown)")
        for table, gone in self.left_out.items():
            out.append(f"{table}: {gone['rows']:,} row(s) of {gone['customers']:,} customer(s) in neither the customers "
                       f"table nor the ledger are not used (e.g. {', '.join(gone['examples'])})")
        d = self.undated
        if d and (d["disputes"] or d["part_payments"]):
            what = " and ".join(part for part in (
                f"{d['disputes']:,} dispute(s) without a dispute date" if d["disputes"] else "",
                f"{d['part_payments']:,} part payment(s) without a paid date" if d["part_payments"] else "") if part)
            out.append(f"{what}: dated on the ledger's last date {d['date']}, so they count from then on")
        if label:
            out.append(f"default label: {self.label}")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "BookNotes":
        data = data or {}
        return cls(absent=tuple(data.get("absent", ())), derived_customers=int(data.get("derived_customers", 0)),
                   unknown_customers=data.get("unknown_customers"), left_out=dict(data.get("left_out") or {}),
                   undated=data.get("undated"), label_source=data.get("label_source", cls.label_source),
                   label=data.get("label", cls.label))

    def to_dict(self) -> dict[str, Any]:
        return {"absent": list(self.absent), "derived_customers": self.derived_customers,
                "unknown_customers": self.unknown_customers, "left_out": self.left_out,
                "undated": self.undated, "label_source": self.label_source, "label": self.label}


def _examples(ids: pd.Series | np.ndarray) -> list[str]:
    return [str(v) for v in pd.unique(np.asarray(ids, dtype=object))[:EXAMPLES]]


def last_date(invoices: pd.DataFrame) -> pd.Timestamp | None:
    """The latest day the ledger holds a fact for: the day it was exported."""
    cols = [c for c in ("issue_date", "paid_date", "dispute_date", "written_off_date") if c in invoices.columns]
    found = [invoices[c].max() for c in cols]
    known = [pd.Timestamp(d) for d in found if pd.notna(d)]
    return max(known).normalize() if known else None


def date_undated(invoices: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """Dispute flags without a dispute date, and part payments without a paid date, dated on the
    ledger's last date; ``disputed`` then holds exactly where a dispute date does. Returns the
    table (columns replaced, never changed in place) and what was dated."""
    end = last_date(invoices)
    if end is None:
        return invoices, None
    out = invoices.copy(deep=False)
    for column in ("dispute_date", "paid_amount", "disputed"):
        if column not in out.columns:  # a table built in code, not read
            out[column] = absent_column(INVOICES, column, out.index)
    undated_dispute = out["disputed"].to_numpy(bool) & out["dispute_date"].isna().to_numpy()
    paid_amount = out["paid_amount"].to_numpy(dtype=float, na_value=np.nan)
    undated_part = out["paid_date"].isna().to_numpy() & (np.nan_to_num(paid_amount) > 0)
    if undated_dispute.any():
        out["dispute_date"] = out["dispute_date"].mask(undated_dispute, end)
    if undated_part.any():
        out["paid_date"] = out["paid_date"].mask(undated_part, end)
    disputed = out["dispute_date"].notna().to_numpy()
    if not np.array_equal(disputed, out["disputed"].to_numpy(bool)):
        out["disputed"] = disputed
    return out, {"date": str(end.date()), "disputes": int(undated_dispute.sum()),
                 "part_payments": int(undated_part.sum())}


def derived_customers(invoices: pd.DataFrame, ids: np.ndarray | None = None) -> pd.DataFrame:
    """A customers table from the ledger: one row per customer with an invoice (of ``ids`` only,
    when given), first trade on its first invoice, industry unknown, nothing else known."""
    inv = invoices[["customer_id", "issue_date"]]
    if ids is not None:
        inv = inv[inv["customer_id"].isin(ids)]
    first = inv.groupby(inv["customer_id"].astype(object), sort=True)["issue_date"].min()
    n = len(first)
    return pd.DataFrame({
        "customer_id": first.index.astype(str).to_numpy(dtype=object),
        "name": np.full(n, None, dtype=object), "industry": np.full(n, UNKNOWN_INDUSTRY, dtype=object),
        "country": np.full(n, None, dtype=object), "founded": pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]"),
        "first_trade_date": first.to_numpy(dtype="datetime64[ns]"),
    })


def received(amount: np.ndarray, paid_amount: np.ndarray, paid: np.ndarray) -> np.ndarray:
    """Per invoice, what the payments counted (``paid``: a mask) brought in: ``paid_amount``,
    at most the amount, or the whole amount when it is empty (a paid date alone is payment in
    full). The one rule of the open amount, the ledger's defaults and the payment features."""
    return np.where(paid, np.where(np.isnan(paid_amount), amount, np.minimum(paid_amount, amount)), 0.0)


def open_amount(invoices: pd.DataFrame) -> np.ndarray:
    """Per invoice, what is left unpaid at the ledger's last date."""
    amount = invoices["amount"].to_numpy(dtype=float)
    paid = invoices["paid_amount"].to_numpy(dtype=float, na_value=np.nan)
    return amount - received(amount, paid, invoices["paid_date"].notna().to_numpy())


def open_left(invoices: pd.DataFrame, as_of: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """The positions of the invoices open on ``as_of`` (issued by then, not paid in full by
    then) and what is left of each: numpy masks over the columns, no row copied (a book of 20
    million invoices is read in a second)."""
    at = np.datetime64(pd.Timestamp(as_of), "ns")
    issue = invoices["issue_date"].to_numpy(dtype="datetime64[ns]")
    paid = invoices["paid_date"].to_numpy(dtype="datetime64[ns]")
    amount = invoices["amount"].to_numpy(dtype=float)
    paid_amount = invoices["paid_amount"].to_numpy(dtype=float, na_value=np.nan)
    left = amount - received(amount, paid_amount, ~np.isnat(paid) & (paid <= at))
    where = np.flatnonzero((issue <= at) & (left > ROUNDING))
    return where, left[where]


def days_past_due(due: np.ndarray, as_of: pd.Timestamp) -> np.ndarray:
    """Whole days each due date lies before ``as_of``; 0 for what is not yet due."""
    return np.maximum((np.datetime64(pd.Timestamp(as_of), "ns") - due) // np.timedelta64(1, "D"), 0)


def open_invoices(invoices: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The invoices open on ``as_of``, with what is left of each and how many days it is past
    due (0: not yet due): what the desk shows of a customer's receivables."""
    as_of = pd.Timestamp(as_of)
    where, left = open_left(invoices, as_of)
    out = invoices.iloc[where][["customer_id", "invoice_id", "issue_date", "due_date", "amount"]].reset_index(drop=True)
    out["open_amount"] = np.round(left, 2)
    out["days_past_due"] = days_past_due(out["due_date"].to_numpy(dtype="datetime64[ns]"), as_of)
    out["disputed"] = disputed_on(invoices, as_of)[where]
    return out  # in the ledger's order: sorting 20 million ids would cost more than the rest


def disputed_on(invoices: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
    """Which invoices were in dispute on ``as_of``: flagged, and the dispute raised by then
    (a flag without a date counts from the day the flag is dated, see above)."""
    if "disputed" not in invoices.columns:
        return np.zeros(len(invoices), dtype=bool)
    flag = invoices["disputed"].to_numpy(dtype=bool, na_value=False)
    if "dispute_date" not in invoices.columns:
        return flag
    raised = invoices["dispute_date"].to_numpy(dtype="datetime64[ns]")
    return flag & (np.isnat(raised) | (raised <= np.datetime64(pd.Timestamp(as_of), "ns")))


def unknown_customers(invoices: pd.DataFrame, known: pd.Series) -> tuple[np.ndarray, dict[str, Any] | None]:
    """The customers with invoices that ``known`` (a customers table's ids) lacks, and the note on
    them: how many, their invoices, amount, open amount and a few ids."""
    ids = invoices["customer_id"]
    missing = ~ids.isin(known.astype(str)).to_numpy()
    if not missing.any():
        return np.zeros(0, dtype=object), None
    rows = invoices[missing]
    unknown = pd.unique(rows["customer_id"].astype(object).to_numpy())
    return unknown, {"customers": int(unknown.size), "invoices": int(missing.sum()),
                     "amount": float(rows["amount"].sum()), "open_amount": float(open_amount(rows).sum()),
                     "examples": _examples(np.sort(unknown.astype(str)))}


def left_out(table: pd.DataFrame, customers: pd.Series) -> dict[str, Any] | None:
    """The rows of ``table`` whose customer is not in ``customers``, counted, with a few ids."""
    gone = ~table["customer_id"].isin(customers).to_numpy()
    if not gone.any():
        return None
    ids = table.loc[gone, "customer_id"]
    return {"rows": int(gone.sum()), "customers": int(ids.nunique()), "examples": _examples(ids.sort_values())}


def ledger_defaults(invoices: pd.DataFrame, days_past_due: int = 90, min_amount: float = 0.0) -> pd.DataFrame:
    """Severe delinquency from the ledger, as bureaus define default for trade credit: an invoice
    more than ``days_past_due`` days past due with more than ``min_amount`` still unpaid then,
    or an invoice written off. An invoice disputed by then is not counted: it is held back over
    a quarrel about the goods, not for want of money. The default date is the day it is first known: the day after the
    invoice reached ``days_past_due`` days past due (or the write-off), never later than the
    ledger's last date (what lies past it is not known yet). One row per customer, its first
    default (``customer_id``, ``default_date``, ``kind``)."""
    end = last_date(invoices)
    if end is None or invoices.empty:
        return pd.DataFrame({"customer_id": pd.Series([], dtype=object),
                             "default_date": pd.Series([], dtype="datetime64[ns]"),
                             "kind": pd.Series([], dtype=object)})
    due = invoices["due_date"].to_numpy(dtype="datetime64[ns]")
    day = due + np.timedelta64(int(days_past_due) + 1, "D")
    amount = invoices["amount"].to_numpy(dtype=float)
    paid = invoices["paid_amount"].to_numpy(dtype=float, na_value=np.nan)
    paid_on = invoices["paid_date"].to_numpy(dtype="datetime64[ns]")
    by_then = ~np.isnat(paid_on) & (paid_on < day)  # a payment on the day itself came too late
    got = received(amount, paid, by_then)
    raised = (invoices["dispute_date"] if "dispute_date" in invoices.columns
              else absent_column(INVOICES, "dispute_date", invoices.index)).to_numpy(dtype="datetime64[ns]")
    disputed = ~np.isnat(raised) & (raised <= day)
    late = (amount - got > max(float(min_amount), ROUNDING)) & (day <= np.datetime64(end, "ns")) & ~disputed
    kind = "90dpd" if days_past_due == 90 else "delinquent"
    parts = [pd.DataFrame({"customer_id": invoices["customer_id"].to_numpy(dtype=object)[late],
                           "default_date": day[late], "kind": kind})]
    if "written_off_date" in invoices.columns:
        off = invoices["written_off_date"].notna().to_numpy()
        parts.append(pd.DataFrame({"customer_id": invoices["customer_id"].to_numpy(dtype=object)[off],
                                   "default_date": invoices["written_off_date"].to_numpy(dtype="datetime64[ns]")[off],
                                   "kind": "written_off"}))
    both = pd.concat(parts, ignore_index=True).sort_values(["customer_id", "default_date"], kind="stable")
    first = both.drop_duplicates("customer_id", keep="first").reset_index(drop=True)
    return first.astype({"customer_id": object, "kind": object})


def label_words(from_ledger: bool, days_past_due: int, min_amount: float, why: str = "") -> str:
    """Which label a book's defaults are, in words (the run's tag and the model card)."""
    if not from_ledger:
        return "the defaults table"
    amount = f" with more than {min_amount:,.2f} unpaid" if min_amount > 0 else ""
    return (f"from the ledger: an invoice more than {days_past_due} days past due{amount}, or written off"
            + (f" ({why})" if why else ""))


def compare_labels(given: pd.DataFrame, from_ledger: pd.DataFrame) -> dict[str, Any]:
    """The defaults table against the ledger's own label: how many customers each counts, how
    many both do, and how much later (median days) the ledger knows a default the table has."""
    a = given.groupby(given["customer_id"].astype(str))["default_date"].min()
    b = from_ledger.set_index(from_ledger["customer_id"].astype(str))["default_date"]
    both = a.index.intersection(b.index)
    lag = (b[both] - a[both]).dt.days
    return {"table": int(a.size), "ledger": int(b.size), "both": int(both.size),
            "median_days_later": float(lag.median()) if both.size else None}
