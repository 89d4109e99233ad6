"""Reading and writing tables at the edges: Parquet, CSV and ARFF in, atomic Parquet out."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import pandas as pd

from riskcast.errors import DataValidationError, InputError

from . import ledger
from .ledger import BookNotes
from .schema import ALL_TABLES, ARROW_STRING, RAW_TABLES, TableContract, validate_table

if TYPE_CHECKING:
    import pyarrow as pa

    from riskcast.config import LabelConfig

    from .mapping import ColumnMapping


@dataclass(frozen=True)
class RawTables:
    """The five raw tables, validated; ``truth`` only for synthetic books."""

    customers: pd.DataFrame
    financial_statements: pd.DataFrame
    invoices: pd.DataFrame
    industry_signals: pd.DataFrame
    defaults: pd.DataFrame
    truth: pd.DataFrame | None = None
    #: the credit insurance's policies, when the data folder has the optional table
    credit_insurance: pd.DataFrame | None = None
    #: customers left out when read with ``reject_bad_customers`` (customer_id, kind, reason)
    rejected_customers: pd.DataFrame | None = None
    #: what was derived from the ledger, or could not be used, when the book was read
    notes: BookNotes = field(default_factory=BookNotes)

    def items(self) -> Iterator[tuple[str, pd.DataFrame]]:
        """The tables (not the rejected customers), for writing a book out."""
        for f in fields(self):
            df = getattr(self, f.name)
            if isinstance(df, pd.DataFrame) and f.name != "rejected_customers":
                yield f.name, df

    def as_seen_on(self, as_of: pd.Timestamp) -> "RawTables":
        """The book as a credit team saw it on ``as_of``: nothing issued, paid, filed,
        published or defaulted later (``truth`` up to ``as_of``)."""
        as_of = pd.Timestamp(as_of)
        inv = self.invoices[self.invoices["issue_date"] <= as_of].copy()
        later = inv["paid_date"] > as_of
        inv.loc[later, "paid_date"] = pd.NaT
        inv.loc[later, "paid_amount"] = np.nan
        raised_later = inv["dispute_date"] > as_of
        inv.loc[raised_later, "dispute_date"] = pd.NaT
        inv.loc[raised_later, "disputed"] = False
        if "written_off_date" in inv.columns:
            inv.loc[inv["written_off_date"] > as_of, "written_off_date"] = pd.NaT
        truth = None if self.truth is None else self.truth[self.truth["as_of"] <= as_of]
        signals = self.industry_signals
        return dataclasses.replace(
            self,
            customers=self.customers,
            financial_statements=self.financial_statements[self.financial_statements["filed_date"] <= as_of],
            invoices=inv,
            industry_signals=signals[signals["month"] < as_of.to_period("M").to_timestamp()],
            defaults=self.defaults[self.defaults["default_date"] <= as_of],
            truth=truth,
        )

    @property
    def data_end(self) -> pd.Timestamp:
        """The last day for which the book holds facts (latest invoice or statement filing)."""
        dates = [self.invoices["issue_date"].max(), self.financial_statements["filed_date"].max()]
        return max(d for d in dates if pd.notna(d)).normalize()

    @property
    def last_date(self) -> pd.Timestamp | None:
        """The latest day any table holds a fact for: an invoice issued or paid, a statement
        filed, a month of industry signals (its last day), a default. Past it the data says
        nothing, and every invoice still open on it would look that much later."""
        dates = [self.invoices["issue_date"].max(), self.invoices["paid_date"].max(),
                 self.financial_statements["filed_date"].max(), self.defaults["default_date"].max()]
        month = self.industry_signals["month"].max()
        if pd.notna(month):
            dates.append(pd.Timestamp(month) + pd.offsets.MonthEnd(0))
        known = [pd.Timestamp(d) for d in dates if pd.notna(d)]
        return max(known).normalize() if known else None


#: days an as-of date may lie past the data's last date: a book exported in the evening is
#: scored the next morning
AS_OF_TOLERANCE_DAYS = 1


def days_past_data(tables: RawTables, dates: "Sequence[pd.Timestamp]", *, allow: bool = False) -> int:
    """How many days the latest of ``dates`` lies past the data's last date (0 when it does
    not). More than the tolerance is refused unless ``allow``: scored on a date the data does
    not reach, every open invoice looks that much overdue and the book is declined."""
    end = tables.last_date
    if end is None or not len(dates):
        return 0
    latest = max(pd.Timestamp(d) for d in dates)
    past = max((latest - end).days, 0)
    if past > AS_OF_TOLERANCE_DAYS and not allow:
        far = f"{past:,} days" + (f" (about {past / 365.25:.1f} years)" if past >= 365 else "")
        raise InputError(f"--as-of: {latest.date()} is {far} past the end of the data ({end.date()}, the "
                         "latest date in its tables); give --allow-future-as-of to score a date the data does not "
                         "reach", field="as_of")
    return past


def _umask() -> int:
    """The process's file-creation mask, read without changing it (Linux), else 0o022."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; a result is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


class ParquetParts:
    """A Parquet file written part by part (one row group each) and moved into place only
    when the block that writes it succeeds: a table too large to hold whole can still be
    written atomically. Later parts are cast to the first part's schema."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows = 0
        self._atomic = atomic_path(self.path)
        self._tmp: Path | None = None
        self._writer = None

    def __enter__(self) -> "ParquetParts":
        self._tmp = self._atomic.__enter__()
        return self

    def append(self, df: "pd.DataFrame | pa.Table") -> None:
        """One part: a DataFrame, or an Arrow table (a part read back from a Parquet file
        need not go through pandas)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, table.schema)
        else:
            table = table.cast(self._writer.schema)
        self._writer.write_table(table)
        self.rows += len(df)

    def __exit__(self, *exc) -> bool:
        if self._writer is not None:
            self._writer.close()
        return bool(self._atomic.__exit__(*exc))


def json_ready(obj: Any) -> Any:
    """``obj`` with NaN and infinities as null (not valid JSON) and numpy scalars as Python
    numbers, through dicts, lists and tuples: ready for ``json.dumps(..., allow_nan=False)``."""
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def write_text(text: str, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_any(path: str | Path, *, compact: bool = False, columns: "Sequence[str] | None" = None) -> pd.DataFrame:
    """Read a CSV, Parquet or ARFF file; ``?`` and empty cells are missing values.
    ``compact`` reads Parquet text as Arrow strings (dictionary-encoded text as categories),
    not one Python object per cell. ``columns``: only those of them the file has (a scored
    book's reason texts are most of its size)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"file {path.name} does not exist", field=str(path))
    suffix = path.suffix.lower()
    wanted = set(columns) if columns is not None else None
    try:
        if suffix in (".parquet", ".pq"):
            if compact:
                return _read_parquet_compact(path)
            if wanted is None:
                return pd.read_parquet(path)
            import pyarrow.parquet as pq

            return pd.read_parquet(path, columns=[c for c in pq.read_schema(path).names if c in wanted])
        if suffix in (".csv", ".txt"):
            return pd.read_csv(path, na_values=["?", ""], keep_default_na=True, low_memory=False,
                               usecols=(lambda c: c in wanted) if wanted is not None else None)
        if suffix == ".arff":
            df = _read_arff(path)
            return df if wanted is None else df[[c for c in df.columns if c in wanted]]
    except (OSError, ValueError) as exc:
        raise InputError(f"file {path.name} cannot be read as {suffix[1:]}: {exc}", field=str(path)) from None
    raise InputError(f"file {path.name}: unsupported format {suffix!r} (use .csv, .parquet or .arff)", field=str(path))


def _read_parquet_compact(path: Path) -> pd.DataFrame:
    """Parquet to pandas one column at a time, text as Arrow strings in one tight buffer (the
    reader's own buffers are several times larger than the text), so that peak memory is the
    table plus what the reader needs for one column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, pd.Series] = {}
    for name in pq.read_schema(path).names:
        if name.startswith("__index_level_"):  # a stored pandas index, not data
            continue
        col = pq.read_table(path, columns=[name]).column(0)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            columns[name] = pd.Series(pd.array(col.combine_chunks(), dtype=ARROW_STRING), name=name)
        else:
            columns[name] = col.to_pandas()
        del col
    return pd.DataFrame(columns, copy=False)


def _read_arff(path: Path) -> pd.DataFrame:
    from scipy.io import arff

    data, meta = arff.loadarff(str(path))
    df = pd.DataFrame(data)
    for name in meta.names():
        if meta[name][0] == "nominal":
            df[name] = df[name].str.decode("utf-8").replace("?", np.nan)
    return df


def find_table_file(directory: Path, name: str) -> Path | None:
    """The one file of table ``name`` in ``directory`` (Parquet or CSV), or None. Both at once
    is refused: picking one without a word could read last month's export instead of today's."""
    found = [p for p in (directory / f"{name}{suffix}" for suffix in (".parquet", ".csv")) if p.exists()]
    if len(found) > 1:
        raise DataValidationError(name, None, f"two files for one table, {found[0].name} and {found[1].name}: "
                                              "keep one (or name it in the column mapping)")
    return found[0] if found else None


#: the tables a book may lack: the invoices ledger is the one table required
OPTIONAL_TABLES = ("customers", "financial_statements", "industry_signals", "defaults", "credit_insurance")


def _read_mapped(directory: Path, name: str, mapping: "ColumnMapping | None") -> pd.DataFrame | None:
    """One raw table, read from its file and renamed to the canonical columns; None when an
    optional table has no file (or an empty one)."""
    spec = mapping.table(name) if mapping is not None else None
    if spec is not None and spec.file:
        path = directory / spec.file
        if not path.exists():
            raise DataValidationError(name, None, f"mapped file {spec.file} does not exist in the data folder")
    else:
        path = find_table_file(directory, name)
        if path is None:
            if name in OPTIONAL_TABLES:
                return None
            raise DataValidationError(name, None, f"no {name}.parquet or {name}.csv in the data folder {directory.name} "
                                                  "(the invoices ledger is the one table a book needs)")
    if name in OPTIONAL_TABLES and path.stat().st_size == 0:
        return None
    df = read_any(path, compact=RAW_TABLES[name].compact)
    if spec is not None and spec.columns:
        sources = spec.sources()
        absent = {canon: s.column for canon, s in sources.items() if s.column is not None and s.column not in df.columns}
        if absent:
            canon, src = next(iter(absent.items()))
            raise DataValidationError(name, canon, f"mapped from column {src!r}, which {path.name} does not have "
                                                   f"(its columns: {', '.join(map(str, df.columns[:12]))})")
        # each canonical column from the file as read (one source may feed several); the
        # sources themselves are not kept under their own names
        mapped = {canon: df[s.column] if s.column is not None else pd.Series(s.constant, index=df.index)
                  for canon, s in sources.items()}
        used = {s.column for s in sources.values() if s.column is not None}
        df = df.drop(columns=[c for c in used | set(mapped) if c in df.columns]).assign(**mapped)
    return df


def empty_table(contract: TableContract) -> pd.DataFrame:
    """A table of no rows with the contract's columns and types: an absent optional table."""
    return validate_table(contract, pd.DataFrame({c: pd.Series([], dtype=object) for c in contract.column_names}))


def read_tables(directory: str | Path, *, with_truth: bool = True, mapping: "ColumnMapping | None" = None,
                reject_bad_customers: bool = False, label: "LabelConfig | None" = None) -> RawTables:
    """Read and validate the raw tables (and ``truth`` if present) from a folder, optionally
    through a column mapping from the user's own files.

    Only the invoices are required; what the other tables would hold is derived from the
    ledger or left missing, by the rules of ``data.ledger``, and counted in ``notes``.
    ``label``: where defaults come from (``LabelConfig``; by default the defaults table when
    there is one, else the ledger).

    ``reject_bad_customers``: a customer whose industry is not a NACE section or whose first
    trade date is empty or not a date is set aside in ``rejected_customers`` with the reason
    instead of failing the whole read (a nightly rescore of a million customers should not
    stop on one bad master-data record); every other problem still fails loudly."""
    from riskcast.config import LabelConfig

    label = label or LabelConfig()
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"data folder {directory.name or directory} does not exist", field="data")

    def formats(name: str) -> dict[str, str] | None:
        spec = mapping.table(name) if mapping is not None else None
        return spec.date_formats() if spec is not None else None

    out: dict[str, pd.DataFrame | None] = {}
    absent: list[str] = []
    invoices = validate_table(RAW_TABLES["invoices"], _read_mapped(directory, "invoices", mapping), formats("invoices"))
    invoices, undated = ledger.date_undated(invoices)
    release_memory()
    customers, rejected, derived, unknown = _customers(directory, mapping, invoices, reject_bad_customers,
                                                       formats("customers"), absent)
    out["customers"], out["rejected_customers"] = customers, rejected
    left_out: dict[str, dict] = {}
    for name in ("financial_statements", "industry_signals", "defaults"):
        df = _read_mapped(directory, name, mapping)
        if df is None:
            absent.append(name)
            out[name] = empty_table(RAW_TABLES[name])
        else:
            out[name] = validate_table(RAW_TABLES[name], df, formats(name))
            if name != "industry_signals":
                gone = ledger.left_out(out[name], customers["customer_id"])
                if gone:
                    left_out[name] = gone
        del df
    from_ledger = label.source == "ledger" or (label.source == "auto" and "defaults" in absent)
    if label.source == "defaults" and "defaults" in absent:
        raise DataValidationError("defaults", None, 'label.source is "defaults" but the data folder has no defaults '
                                                    'table (set label.source = "ledger" to derive defaults from the invoices)')
    if from_ledger:
        out["defaults"] = validate_table(RAW_TABLES["defaults"],
                                         ledger.ledger_defaults(invoices, label.days_past_due, label.min_amount))
    why = ("no defaults table" if label.source == "auto" else 'label.source = "ledger"') if from_ledger else ""
    out["invoices"] = invoices
    df = _read_mapped(directory, "credit_insurance", mapping)  # optional, and not missed when absent
    if df is not None:
        out["credit_insurance"] = validate_table(RAW_TABLES["credit_insurance"], df, formats("credit_insurance"))
        gone = ledger.left_out(out["credit_insurance"], customers["customer_id"])
        if gone:
            left_out["credit_insurance"] = gone
    del df
    truth_path = find_table_file(directory, "truth") if with_truth else None
    out["truth"] = validate_table(ALL_TABLES["truth"], read_any(truth_path)) if truth_path else None
    notes = BookNotes(absent=tuple(absent), derived_customers=derived, unknown_customers=unknown, left_out=left_out,
                      undated=undated, label_source="ledger" if from_ledger else "defaults",
                      label=ledger.label_words(from_ledger, label.days_past_due, label.min_amount, why))
    return RawTables(**out, notes=notes)


def _customers(directory: Path, mapping: "ColumnMapping | None", invoices: pd.DataFrame, reject_bad: bool,
               formats: dict[str, str] | None, absent: list[str]
               ) -> tuple[pd.DataFrame, pd.DataFrame | None, int, dict | None]:
    """The customers table as given, completed from the ledger: every customer with an invoice
    is in it (derived when the table lacks it), so no invoice is lost from the totals. Returns
    the table, the rejected customers, how many were derived and the note on the unknown ones."""
    contract = RAW_TABLES["customers"]
    df = _read_mapped(directory, "customers", mapping)
    if df is None:
        absent.append("customers")
        derived = validate_table(contract, ledger.derived_customers(invoices))
        return derived, (_no_rejections() if reject_bad else None), len(derived), None
    if "first_trade_date" not in df.columns:  # first trade on the first invoice
        first = ledger.derived_customers(invoices).set_index("customer_id")["first_trade_date"]
        df = df.assign(first_trade_date=df["customer_id"].astype(str).map(first))
    rejected = None
    if reject_bad:
        df, rejected = split_bad_customers(df)
    customers = validate_table(contract, df, formats)
    known = customers["customer_id"]
    if rejected is not None and len(rejected):
        known = pd.concat([known, rejected["customer_id"]], ignore_index=True)
    unknown_ids, unknown = ledger.unknown_customers(invoices, known)
    if unknown_ids.size:
        extra = validate_table(contract, ledger.derived_customers(invoices, unknown_ids))
        customers = pd.concat([customers, extra], ignore_index=True)
    return customers, rejected, int(unknown_ids.size), unknown


def _no_rejections() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": pd.Series([], dtype=object), "kind": pd.Series([], dtype=object),
                         "reason": pd.Series([], dtype=object)})


def release_memory() -> None:
    """Give back what a large read or step left behind: frames held in reference cycles, the
    Arrow pool's free blocks and the C heap's. Without it a million-customer rescore keeps
    a gigabyte it no longer uses."""
    import ctypes
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def split_bad_customers(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Customers rows a rescore can keep, and the others (customer_id, kind, reason)."""
    from .schema import INDUSTRIES

    for col in ("customer_id", "first_trade_date"):
        if col not in df.columns:
            raise DataValidationError("customers", col, "required column is missing")
    reason = pd.Series(pd.NA, index=df.index, dtype="string")
    kind = pd.Series(pd.NA, index=df.index, dtype="string")
    trade = pd.to_datetime(df["first_trade_date"], errors="coerce")
    bad_trade = trade.isna()
    kind[bad_trade] = "bad first trade date"
    reason[bad_trade] = "customers.first_trade_date: empty or not a date (" + \
        df.loc[bad_trade, "first_trade_date"].astype("string").fillna("empty") + ")"
    if "industry" in df.columns:  # an empty industry is unknown, a value of its own
        industry = df["industry"].astype("string").str.strip()
        bad_industry = industry.notna() & (industry != "") & ~industry.isin(INDUSTRIES)
        kind[bad_industry] = "bad industry code"
        reason[bad_industry] = "customers.industry: " + industry[bad_industry] + \
            " is not a NACE section A-U (leave it empty when the industry is not known)"
    bad = reason.notna() & df["customer_id"].notna()
    rejected = pd.DataFrame({"customer_id": df.loc[bad, "customer_id"].astype(str), "kind": kind[bad].astype(str),
                             "reason": reason[bad].astype(str)})
    return df.loc[~bad], rejected.reset_index(drop=True)


def write_tables(tables: RawTables, directory: str | Path) -> dict[str, Path]:
    directory = Path(directory)
    return {name: write_parquet(df, directory / f"{name}.parquet") for name, df in tables.items()}
