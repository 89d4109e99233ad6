"""Point-in-time feature tables: one row per (customer_id, as_of), only facts known at as_of.

The same functions build a training snapshot for the whole book, the latest features for
the online store, and one customer's row, so training and serving cannot drift apart.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import pandas as pd

from riskcast.data.io import RawTables
from riskcast.data.schema import UNKNOWN_INDUSTRY
from riskcast.errors import InputError

from .financial import financial_features
from .industry import industry_features
from .payment import InvoiceLedger
from .registry import POLICY_FACTS, FeatureRegistry, default_registry

ID_COLUMNS = ["customer_id", "as_of", "industry"]
#: columns the credit policy needs beside the model features
CONTEXT_COLUMNS = [f.name for f in POLICY_FACTS]


def parse_as_of(values: str | Iterable[str | pd.Timestamp]) -> list[pd.Timestamp]:
    """``"2024-01-01,2024-04-01"`` or a list of dates -> sorted unique timestamps."""
    items = values.split(",") if isinstance(values, str) else list(values)
    out = []
    for v in items:
        v = v.strip() if isinstance(v, str) else v
        try:
            ts = pd.Timestamp(v)
        except (ValueError, TypeError):
            raise InputError(f"as_of: {v!r} is not a date (use YYYY-MM-DD)", field="as_of") from None
        if pd.isna(ts):
            raise InputError(f"as_of: {v!r} is not a date (use YYYY-MM-DD)", field="as_of")
        out.append(ts.normalize())
    if not out:
        raise InputError("as_of: no date given", field="as_of")
    return sorted(set(out))


def active_book(tables: RawTables, as_of: pd.Timestamp) -> pd.DataFrame:
    """Customers trading by ``as_of`` and not already in default on it."""
    c = tables.customers
    defaulted = tables.defaults.loc[tables.defaults["default_date"] <= as_of, "customer_id"]
    book = c[(c["first_trade_date"] <= as_of) & ~c["customer_id"].isin(defaulted)]
    return book[["customer_id", "industry", "first_trade_date"]]


def features_at(tables: RawTables, as_of: pd.Timestamp, registry: FeatureRegistry,
                ledger: InvoiceLedger | None = None, fill: bool = True) -> pd.DataFrame:
    """The feature table of the active book on one date; ``ledger`` is ``tables.invoices``
    already reduced, when the caller asks for several dates. ``fill=False``: without the
    registry's fills (``finalize``)."""
    book = active_book(tables, as_of).set_index("customer_id")
    fin = financial_features(tables.financial_statements, as_of)
    ledger = ledger if ledger is not None else InvoiceLedger.from_invoices(tables.invoices)
    pay = ledger.features(as_of)
    ind = industry_features(tables.industry_signals, as_of)
    # one aligned frame built once (a join per source would copy the whole book each time)
    out = pd.concat([book, fin.reindex(book.index), pay.reindex(book.index)], axis=1)
    del fin, pay
    by_industry = ind.reindex(out["industry"].to_numpy())
    for c in ind.columns:
        out[c] = by_industry[c].to_numpy()
    out["relationship_months"] = (as_of - out["first_trade_date"]).dt.days / 30.4375
    for name, col in industry_position(out, INDUSTRY_RELATIVE).items():
        out[name] = col
    out = out.reset_index()
    out["as_of"] = as_of
    # what is missing takes the registry's fills there, as at order entry
    return finalize(out, registry, fill)


#: ratios compared with the industry median of the book on the same date
INDUSTRY_RELATIVE = ("current_ratio", "liabilities_to_assets", "roa")


def industry_position(df: pd.DataFrame, ratios: Sequence[str]) -> pd.DataFrame:
    """``<ratio>_vs_industry``: the firm's ratio minus its industry's median in the book
    (the new columns only, on ``df``'s index). A customer of unknown industry has no industry
    to compare with: missing (the customers of unknown industry are no industry of their own)."""
    groups = df.groupby("industry")
    known = (df["industry"] != UNKNOWN_INDUSTRY).to_numpy()
    return pd.DataFrame({f"{r}_vs_industry": (df[r] - groups[r].transform("median")).where(known)
                         for r in ratios}, index=df.index)


def finalize(df: pd.DataFrame, registry: FeatureRegistry, fill: bool = True) -> pd.DataFrame:
    """Registry columns in registry order, as float, clipped to their valid ranges, then filled
    as the registry declares (``FeatureRegistry.fill``; ``fill=False``: the values as
    computed, what a caller who knows the customer's facts would send).

    Clipping is the declared policy for computed values (ratios explode when a denominator
    is near zero); infinities become the range's bound, NaN stays missing unless filled.
    """
    missing = [n for n in registry.names if n not in df.columns]
    if missing:
        raise InputError(f"feature table lacks registry columns {missing}", field=missing[0])
    out = df[[c for c in ID_COLUMNS if c in df.columns]].copy()
    for f in registry.features:
        v = df[f.name].astype("float64")
        out[f.name] = v.clip(f.valid_min, f.valid_max)
    for c in CONTEXT_COLUMNS:
        if c in df.columns:
            out[c] = df[c].astype("float64")
    return registry.fill(out) if fill else out


def build_features(
    tables: RawTables,
    as_of_dates: Sequence[pd.Timestamp],
    registry: FeatureRegistry | None = None,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Feature snapshots of the active book for each date, stacked."""
    registry = registry or default_registry()
    if not as_of_dates:
        raise InputError("as_of: no date given", field="as_of")
    ledger = InvoiceLedger.from_invoices(tables.invoices)
    parts = []
    for i, as_of in enumerate(as_of_dates, 1):
        parts.append(features_at(tables, pd.Timestamp(as_of), registry, ledger))
        if progress:
            progress(f"features {i}/{len(as_of_dates)} as of {pd.Timestamp(as_of).date()}")
    out = pd.concat(parts, ignore_index=True)
    if out.empty:
        raise InputError(empty_book_message(tables, as_of_dates), field="as_of")
    return out


def empty_book_message(tables: RawTables, as_of_dates: Sequence[pd.Timestamp]) -> str:
    first = tables.customers["first_trade_date"].min()
    when = ", ".join(str(pd.Timestamp(d).date()) for d in as_of_dates)
    return f"as_of: no customer is trading on {when} (the first trade in the book is on {first.date()})"
