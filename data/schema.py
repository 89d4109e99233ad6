"""Contracts of the five raw tables: column types, nullability, ranges and keys.

``validate_table`` returns a typed copy of the table or raises ``DataValidationError`` naming
the table, the column and the problem; it never drops rows silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from riskcast.errors import DataValidationError

Kind = Literal["str", "date", "float", "bool", "category"]

NACE_SECTIONS = tuple("ABCDEFGHIJKLMNOPQRSTU")
#: the industry of a customer whose industry is not known: a value of its own, never a made-up
#: section (no industry statistics, no industry median to compare with)
UNKNOWN_INDUSTRY = "unknown"
INDUSTRIES = (*NACE_SECTIONS, UNKNOWN_INDUSTRY)
ARROW_STRING = pd.StringDtype("pyarrow")


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None
    #: how text is held: one Python object per value, or as Arrow strings in the largest
    #: table, where objects would cost gigabytes
    store: Literal["object", "arrow"] = "object"
    #: the file may lack the column: it is then ``default`` on every row (None: empty), or,
    #: with ``added=False``, left out (read only where present; a column of the largest table
    #: that is empty on every row would cost memory for nothing)
    optional: bool = False
    default: object = None
    added: bool = True


@dataclass(frozen=True)
class TableContract:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def compact(self) -> bool:
        return any(c.store != "object" for c in self.columns)


_MONEY = dict(kind="float")

CUSTOMERS = TableContract(
    "customers",
    (
        Column("customer_id", "str"),
        # nothing decides on the name, country or foundation date: a file may lack them
        Column("name", "str", nullable=True, optional=True),
        Column("industry", "category", allowed=INDUSTRIES, optional=True, default=UNKNOWN_INDUSTRY),
        Column("country", "str", nullable=True, optional=True),
        Column("founded", "date", nullable=True, optional=True),
        Column("first_trade_date", "date"),
    ),
    key=("customer_id",),
)

FINANCIAL_STATEMENTS = TableContract(
    "financial_statements",
    (
        Column("customer_id", "str"),
        Column("period_end", "date"),
        Column("filed_date", "date"),
        Column("revenue", "float", nullable=True, min=0),
        Column("cogs", "float", nullable=True, min=0),
        Column("ebit", "float", nullable=True),
        Column("interest_expense", "float", nullable=True, min=0),
        Column("net_income", "float", nullable=True),
        Column("total_assets", "float", nullable=True, min=0),
        Column("current_assets", "float", nullable=True, min=0),
        Column("cash", "float", nullable=True, min=0),
        Column("receivables", "float", nullable=True, min=0),
        Column("inventory", "float", nullable=True, min=0),
        Column("current_liabilities", "float", nullable=True, min=0),
        Column("total_liabilities", "float", nullable=True, min=0),
        Column("equity", "float", nullable=True),
        Column("retained_earnings", "float", nullable=True),
        Column("operating_cash_flow", "float", nullable=True),
    ),
    key=("customer_id", "period_end"),
)

INVOICES = TableContract(
    "invoices",
    (
        Column("invoice_id", "str", store="arrow"),
        Column("customer_id", "str", store="arrow"),
        Column("issue_date", "date"),
        Column("due_date", "date"),
        Column("amount", "float", min=0),
        Column("paid_date", "date", nullable=True),
        # paid by paid_date (empty: the whole amount); less than the amount leaves the rest open
        Column("paid_amount", "float", nullable=True, min=0, optional=True),
        Column("disputed", "bool", optional=True, default=False),
        # the day the dispute was raised; a flag without it is dated by ``data.ledger``
        Column("dispute_date", "date", nullable=True, optional=True),
        Column("written_off_date", "date", nullable=True, optional=True, added=False),
    ),
    key=("invoice_id",),
)

INDUSTRY_SIGNALS = TableContract(
    "industry_signals",
    (
        Column("industry", "category", allowed=NACE_SECTIONS),
        Column("month", "date"),
        Column("default_rate", "float", min=0, max=1),
        Column("growth_index", "float", min=0),
    ),
    key=("industry", "month"),
)

DEFAULTS = TableContract(
    "defaults",
    (
        Column("customer_id", "str"),
        Column("default_date", "date"),
        Column("kind", "category", allowed=("bankruptcy", "90dpd", "delinquent", "written_off")),
    ),
    key=("customer_id", "default_date"),
)

#: optional: the buyers the seller's trade credit insurance covers, each policy with its insurer,
#: the insured limit (the insurer's decision), the share of a loss it pays, the claim waiting
#: period (protracted default) and when the cover runs
CREDIT_INSURANCE = TableContract(
    "credit_insurance",
    (
        Column("customer_id", "str"),
        Column("insurer", "str"),
        Column("insured_limit", "float", min=0),
        Column("cover_share", "float", min=0, max=1),
        Column("waiting_days", "float", min=0, max=3650, optional=True, default=180.0),
        Column("valid_from", "date", nullable=True, optional=True),
        Column("valid_to", "date", nullable=True, optional=True),
    ),
)

TRUTH = TableContract(
    "truth",
    (
        Column("customer_id", "str"),
        Column("as_of", "date"),
        Column("pd_12m", "float", min=0, max=1),
        Column("pd_12m_hindsight", "float", min=0, max=1),
    ),
    key=("customer_id", "as_of"),
)

RAW_TABLES: dict[str, TableContract] = {
    t.name: t for t in (CUSTOMERS, FINANCIAL_STATEMENTS, INVOICES, INDUSTRY_SIGNALS, DEFAULTS, CREDIT_INSURANCE)
}
ALL_TABLES: dict[str, TableContract] = {**RAW_TABLES, TRUTH.name: TRUTH}


def _rows(mask: pd.Series, limit: int = 5) -> str:
    """``rows 3, 17 (and 40 more)``: row positions (0-based, as read) where ``mask`` holds."""
    pos = np.flatnonzero(np.asarray(mask))
    shown = ", ".join(str(p) for p in pos[:limit])
    more = f" (and {pos.size - limit} more)" if pos.size > limit else ""
    return f"row{'s' if pos.size > 1 else ''} {shown}{more}"


def _unparsed(raw: pd.Series, parsed: pd.Series) -> pd.Series:
    """Values that were present but did not parse. Only text can hold those, so typed
    columns skip the (slow) string comparison."""
    lost = parsed.isna() & raw.notna()
    if not lost.any() or not (raw.dtype == object or pd.api.types.is_string_dtype(raw)):
        return lost & False
    return lost & (raw.astype("string").str.strip() != "")


#: an ISO 8601 date (time and zone may follow): read as it is
_ISO_DATE = r"^\s*\d{4}-\d{2}-\d{2}(?:[T ].*)?\s*$"
#: the other layouts of dates seen in exports; which one a column holds is never guessed
#: between two that both read it (03/04/2024 is March or April)
DATE_LAYOUTS = ("%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%m-%d-%Y", "%Y/%m/%d", "%d/%m/%y", "%m/%d/%y")


def _text_dates(table: str, column: str, s: pd.Series) -> pd.Series:
    """Dates written as text. ISO dates are read as they are. A column in another layout is
    read in the one layout of ``DATE_LAYOUTS`` that reads all its values; when two do and
    give different dates, it is refused (the mapping must give the format), naming a row
    where they differ; when none does, the values that are no dates are reported as such.
    Worked out on the distinct values (a ledger has a few thousand dates, not millions)."""
    distinct = pd.Series(pd.unique(s[s.notna()]), dtype=object)
    text = distinct.astype("string").str.strip()
    iso = text.str.match(_ISO_DATE).fillna(False).astype(bool) | (text == "")
    if bool(iso.all()):
        return pd.to_datetime(s, errors="coerce", format="mixed")
    other = text[~iso].reset_index(drop=True)
    fits = {}
    for layout in DATE_LAYOUTS:
        read = pd.to_datetime(other, errors="coerce", format=layout)
        if read.notna().all():
            fits[layout] = read
    if not fits:  # reported by the caller as values that are no dates
        return pd.to_datetime(s, errors="coerce", format="mixed")
    layouts = list(fits)
    differ = [b for b in layouts[1:] if not fits[b].equals(fits[layouts[0]])]
    if differ:
        example = other[(fits[layouts[0]] != fits[differ[0]]).to_numpy()].iloc[0]
        row = int(np.flatnonzero((s.astype("string").str.strip() == example).fillna(False).to_numpy())[0])
        raise DataValidationError(
            table, column, f"dates are not ISO (YYYY-MM-DD) and read both as {layouts[0]!r} and as {differ[0]!r}, e.g. "
                           f"{example!r} at row {row}: give the column's format in the mapping "
                           f"({column} = {{ column = \"...\", format = \"{layouts[0]}\" }})")
    lookup = dict(zip(distinct[~iso], fits[layouts[0]]))
    if iso.any():
        lookup.update(zip(distinct[iso], pd.to_datetime(text[iso], errors="coerce", format="mixed")))
    return pd.to_datetime(s.map(lookup))


def _coerce(table: str, col: Column, s: pd.Series, date_format: str | None = None) -> pd.Series:
    if col.store == "arrow":
        return s if s.dtype == ARROW_STRING else s.astype(ARROW_STRING)
    if col.kind in ("str", "category"):
        out = s.astype("string").astype(object).where(s.notna(), None)
        return out
    if col.kind == "date":
        if pd.api.types.is_datetime64_any_dtype(s):
            parsed = s
        elif date_format is not None:
            parsed = pd.to_datetime(s, errors="coerce", format=date_format)
            bad = _unparsed(s, parsed)
            if bad.any():
                raise DataValidationError(table, col.name, f"{int(bad.sum())} value(s) do not have the mapped format "
                                                           f"{date_format!r}, e.g. {_shown(s[bad].iloc[0])!r} at {_rows(bad)}")
        elif s.dtype == object or pd.api.types.is_string_dtype(s):
            parsed = _text_dates(table, col.name, s)
        else:
            parsed = pd.to_datetime(s, errors="coerce")
        bad = _unparsed(s, parsed)
        if bad.any():
            sample = s[bad].iloc[0]
            raise DataValidationError(table, col.name, f"{int(bad.sum())} value(s) are not dates, e.g. {_shown(sample)!r} at {_rows(bad)}")
        if parsed.dt.tz is not None:
            parsed = parsed.dt.tz_localize(None)
        return parsed if parsed.dtype == "datetime64[ns]" else parsed.astype("datetime64[ns]")
    if col.kind == "float":
        num = s if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) else pd.to_numeric(s, errors="coerce")
        bad = _unparsed(s, num)
        if bad.any():
            sample = s[bad].iloc[0]
            raise DataValidationError(table, col.name, f"{int(bad.sum())} value(s) are not numbers, e.g. {_shown(sample)!r} at {_rows(bad)}")
        if num.dtype != "float64":
            num = num.astype("float64")
        if np.isinf(num).any():
            raise DataValidationError(table, col.name, f"infinite values at {_rows(np.isinf(num))}")
        return num
    if col.kind == "bool":
        if s.dtype == bool:
            return s
        mapping = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False,
                   "y": True, "n": False, "t": True, "f": False, "1.0": True, "0.0": False}
        txt = s.astype("string").str.strip().str.lower()
        out = txt.map(mapping)
        bad = out.isna() & s.notna()
        if bad.any():
            raise DataValidationError(table, col.name, f"{int(bad.sum())} value(s) are not booleans, e.g. {_shown(s[bad].iloc[0])!r} at {_rows(bad)}")
        return out.fillna(False).astype(bool)
    raise AssertionError(col.kind)  # pragma: no cover - Kind is closed


def absent_column(contract: TableContract, name: str, index: pd.Index) -> pd.Series:
    """What an optional column a table lacks holds, typed as a read one: for tables built in
    code rather than read (``validate_table`` adds them to read ones)."""
    col = next(c for c in contract.columns if c.name == name)
    if not col.optional:
        raise ValueError(f"{contract.name}.{name} is required: it has no value when absent")
    return _absent(col, len(index), index)


def _absent(col: Column, n: int, index: pd.Index) -> pd.Series:
    """An optional column the file lacks: its default on every row, typed as read ones are."""
    if col.kind == "date":
        return pd.Series(pd.NaT, index=index, dtype="datetime64[ns]")
    if col.kind == "float":
        return pd.Series(np.nan if col.default is None else float(col.default), index=index, dtype="float64")
    if col.kind == "bool":
        return pd.Series(bool(col.default), index=index, dtype=bool)
    return pd.Series([col.default] * n, index=index, dtype=object)


def _shown(value: object) -> object:
    """A value as a message shows it: a numpy scalar as the plain number it holds."""
    return value.item() if isinstance(value, np.generic) else value


def validate_table(contract: TableContract, df: pd.DataFrame,
                   date_formats: dict[str, str] | None = None) -> pd.DataFrame:
    """Check ``df`` against ``contract`` and return a typed copy with the contract's columns.

    Extra columns are kept (a user's ledger may carry more); missing ones are an error.
    ``date_formats``: a column's date format (``%d/%m/%Y``) where the mapping gives one.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataValidationError(contract.name, None, f"expected a table, got {type(df).__name__}")
    missing = [c.name for c in contract.columns if c.name not in df.columns and not c.optional]
    if missing:
        raise DataValidationError(contract.name, missing[0], f"required column is missing (missing: {missing})")
    out = df.copy(deep=False)  # columns are replaced, never changed in place
    for col in contract.columns:
        if col.name not in out.columns:
            if not col.added:
                continue
            out[col.name] = _absent(col, len(out), out.index)
        given = out[col.name]
        s = _coerce(contract.name, col, given, (date_formats or {}).get(col.name))
        nulls = s.isna()
        if col.default is not None and nulls.any():  # an empty cell says what an absent column says
            s = s.where(~nulls, col.default)
            nulls = s.isna()
        if not col.nullable and nulls.any():
            raise DataValidationError(contract.name, col.name, f"{int(nulls.sum())} empty value(s) in a required column at {_rows(nulls)}")
        if col.kind == "float":
            if col.min is not None and (s < col.min).any():
                low = s < col.min
                raise DataValidationError(contract.name, col.name, f"value {_shown(s[low].iloc[0])!r} is below the minimum {col.min} at {_rows(low)}")
            if col.max is not None and (s > col.max).any():
                high = s > col.max
                raise DataValidationError(contract.name, col.name, f"value {_shown(s[high].iloc[0])!r} is above the maximum {col.max} at {_rows(high)}")
        if col.allowed is not None:
            bad = s.notna() & ~s.isin(col.allowed)
            if bad.any():
                raise DataValidationError(
                    contract.name, col.name,
                    f"value {_shown(s[bad].iloc[0])!r} is not one of {', '.join(col.allowed)} at {_rows(bad)}")
        if s is not given:  # replacing a column of a shared block copies its neighbours
            out[col.name] = s
    if contract.key and not _ascending(out, contract.key):
        dup = out.duplicated(list(contract.key))
        if dup.any():
            first = out.loc[dup, list(contract.key)].iloc[0].tolist()
            raise DataValidationError(contract.name, ",".join(contract.key), f"{int(dup.sum())} duplicate key(s), e.g. {first} at {_rows(dup)}")
    _check_table_rules(contract.name, out)
    return out


def _ascending(df: pd.DataFrame, key: tuple[str, ...]) -> bool:
    """A single Arrow-string key in strictly ascending order, as ledgers are usually exported,
    is unique: one comparison pass instead of hashing tens of millions of ids."""
    if len(key) != 1 or df[key[0]].dtype != ARROW_STRING or len(df) < 2:
        return False
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pa.array(df[key[0]].array)
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if ids.null_count:
        return False
    return bool(pc.all(pc.less(ids.slice(0, len(ids) - 1), ids.slice(1))).as_py())


def _check_table_rules(name: str, df: pd.DataFrame) -> None:
    """Rules between columns of one table."""
    if name == "invoices":
        bad = df["due_date"] < df["issue_date"]
        if bad.any():
            raise DataValidationError(name, "due_date", f"{int(bad.sum())} invoice(s) fall due before they were issued, e.g. {df.loc[bad, 'invoice_id'].iloc[0]} at {_rows(bad)}")
        for column, what in (("paid_date", "paid"), ("dispute_date", "disputed"), ("written_off_date", "written off")):
            if column not in df.columns:
                continue
            bad = df[column].notna() & (df[column] < df["issue_date"])
            if bad.any():
                raise DataValidationError(name, column, f"{int(bad.sum())} invoice(s) {what} before they were issued, e.g. {df.loc[bad, 'invoice_id'].iloc[0]} at {_rows(bad)}")
    elif name == "financial_statements":
        bad = df["filed_date"] < df["period_end"]
        if bad.any():
            raise DataValidationError(name, "filed_date", f"{int(bad.sum())} statement(s) filed before their period ended, e.g. customer {df.loc[bad, 'customer_id'].iloc[0]} at {_rows(bad)}")
