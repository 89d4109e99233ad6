"""Reading and writing tables at the edges: Parquet, CSV and ARFF in, atomic Parquet out."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import pandas as pd

from riskcast.errors import DataValidationError, InputError

from .schema import ALL_TABLES, ARROW_STRING, RAW_TABLES, validate_table

if TYPE_CHECKING:
    import pyarrow as pa

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
    #: customers left out when read with ``reject_bad_customers`` (customer_id, kind, reason)
    rejected_customers: pd.DataFrame | None = None

    def items(self) -> Iterator[tuple[str, pd.DataFrame]]:
        """The tables (not the rejected customers), for writing a book out."""
        for f in fields(self):
            df = getattr(self, f.name)
            if df is not None and f.name != "rejected_customers":
                yield f.name, df

    def as_seen_on(self, as_of: pd.Timestamp) -> "RawTables":
        """The book as a credit team saw it on ``as_of``: nothing issued, paid, filed,
        published or defaulted later (``truth`` up to ``as_of``)."""
        as_of = pd.Timestamp(as_of)
        inv = self.invoices[self.invoices["issue_date"] <= as_of].copy()
        later = inv["paid_date"] > as_of
        inv.loc[later, "paid_date"] = pd.NaT
        inv.loc[later, "paid_amount"] = np.nan
        truth = None if self.truth is None else self.truth[self.truth["as_of"] <= as_of]
        signals = self.industry_signals
        return RawTables(
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


def _read_mapped(directory: Path, name: str, mapping: "ColumnMapping | None") -> pd.DataFrame:
    """One raw table, read from its file and renamed to the canonical columns."""
    spec = mapping.table(name) if mapping is not None else None
    if spec is not None and spec.file:
        path = directory / spec.file
        if not path.exists():
            raise DataValidationError(name, None, f"mapped file {spec.file} does not exist in the data folder")
    else:
        path = find_table_file(directory, name)
        if path is None:
            raise DataValidationError(name, None, f"no {name}.parquet or {name}.csv in the data folder {directory.name}")
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


def read_tables(directory: str | Path, *, with_truth: bool = True, mapping: "ColumnMapping | None" = None,
                reject_bad_customers: bool = False) -> RawTables:
    """Read and validate the five raw tables (and ``truth`` if present) from a folder,
    optionally through a column mapping from the user's own files.

    ``reject_bad_customers``: a customer whose industry is not a NACE section or whose first
    trade date is empty or not a date is set aside in ``rejected_customers`` with the reason
    instead of failing the whole read (a nightly rescore of a million customers should not
    stop on one bad master-data record); every other problem still fails loudly."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"data folder {directory.name or directory} does not exist", field="data")
    out: dict[str, pd.DataFrame | None] = {}
    for name, contract in RAW_TABLES.items():
        df = _read_mapped(directory, name, mapping)
        if name == "customers" and reject_bad_customers:
            df, out["rejected_customers"] = split_bad_customers(df)
        spec = mapping.table(name) if mapping is not None else None
        out[name] = validate_table(contract, df, spec.date_formats() if spec is not None else None)
        del df
        release_memory()
    truth_path = find_table_file(directory, "truth") if with_truth else None
    out["truth"] = validate_table(ALL_TABLES["truth"], read_any(truth_path)) if truth_path else None
    return RawTables(**out)


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
    from .schema import NACE_SECTIONS

    for col in ("customer_id", "industry", "first_trade_date"):
        if col not in df.columns:
            raise DataValidationError("customers", col, "required column is missing")
    industry = df["industry"].astype("string").str.strip()
    trade = pd.to_datetime(df["first_trade_date"], errors="coerce")
    reason = pd.Series(pd.NA, index=df.index, dtype="string")
    kind = pd.Series(pd.NA, index=df.index, dtype="string")
    bad_trade = trade.isna()
    kind[bad_trade] = "bad first trade date"
    reason[bad_trade] = "customers.first_trade_date: empty or not a date (" + \
        df.loc[bad_trade, "first_trade_date"].astype("string").fillna("empty") + ")"
    bad_industry = industry.isna() | ~industry.isin(NACE_SECTIONS)
    kind[bad_industry] = "unknown industry"
    reason[bad_industry] = "customers.industry: unknown industry " + \
        industry[bad_industry].fillna("(empty)") + " (not a NACE section A-U)"
    bad = reason.notna() & df["customer_id"].notna()
    rejected = pd.DataFrame({"customer_id": df.loc[bad, "customer_id"].astype(str), "kind": kind[bad].astype(str),
                             "reason": reason[bad].astype(str)})
    return df.loc[~bad], rejected.reset_index(drop=True)


def write_tables(tables: RawTables, directory: str | Path) -> dict[str, Path]:
    directory = Path(directory)
    return {name: write_parquet(df, directory / f"{name}.parquet") for name, df in tables.items()}
