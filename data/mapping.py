"""Column mapping: a user's own ledger and statements onto the five raw tables.

A small TOML file names, per table, the file to read (relative to the data folder) and which
of its columns holds each canonical column::

    [invoices]
    file = "ar_ledger.csv"
    [invoices.columns]
    invoice_id = "DocNo"
    customer_id = "Account"
    issue_date = "DocDate"

Columns not named keep their canonical name. Every mistake names the file and the column.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from riskcast.config import load_toml

from .schema import RAW_TABLES


class TableMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)


class ColumnMapping(BaseModel):
    """Per raw table: where it lives and how its columns are called."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customers: TableMapping = TableMapping()
    financial_statements: TableMapping = TableMapping()
    invoices: TableMapping = TableMapping()
    industry_signals: TableMapping = TableMapping()
    defaults: TableMapping = TableMapping()

    @model_validator(mode="after")
    def _known_columns(self) -> "ColumnMapping":
        for table, contract in RAW_TABLES.items():
            unknown = set(getattr(self, table).columns) - set(contract.column_names)
            if unknown:
                raise ValueError(f"{table}.columns: {sorted(unknown)} are not columns of {table} "
                                 f"(columns: {', '.join(contract.column_names)})")
            sources = list(getattr(self, table).columns.values())
            dup = {s for s in sources if sources.count(s) > 1}
            if dup:
                raise ValueError(f"{table}.columns: source column(s) {sorted(dup)} mapped more than once")
        return self

    def table(self, name: str) -> TableMapping:
        return getattr(self, name)


def load_mapping(path: str | Path) -> ColumnMapping:
    return load_toml(path, ColumnMapping, "mapping")
