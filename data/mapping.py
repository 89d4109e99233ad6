"""Column mapping: a user's own ledger and statements onto the five raw tables.

A small TOML file names, per table, the file to read (relative to the data folder) and which
of its columns holds each canonical column::

    [invoices]
    file = "ar_ledger.csv"
    [invoices.columns]
    invoice_id = "DocNo"
    customer_id = "Account"
    issue_date = "DocDate"

A canonical column may instead take a constant, or a source column with its date format;
one source column may feed several canonical ones::

    [invoices.columns]
    issue_date = { column = "DocDate", format = "%d/%m/%Y" }
    amount = "Gross"
    paid_amount = "Gross"
    disputed = { constant = false }

Dates without a format are read as ISO dates, or in the one other common layout that reads
every value of the column; a column that two layouts read differently (03/04/2024) is refused
until its format is given. Columns not named keep their canonical name. Every mistake names
the file and the column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, field_validator, model_validator

from riskcast.config import load_toml

from .schema import RAW_TABLES


class ColumnSource(BaseModel):
    """Where one canonical column comes from: a source column (with its date format, for a
    date) or a constant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str | None = None
    constant: StrictBool | StrictInt | StrictFloat | StrictStr | None = None
    format: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "ColumnSource":
        if (self.column is None) == (self.constant is None):
            raise ValueError("give either column or constant")
        if self.format is not None:
            if self.column is None:
                raise ValueError("format: only a source column has one")
            if "%" not in self.format:
                raise ValueError(f"format: {self.format!r} has no directives (e.g. \"%d/%m/%Y\")")
        return self


class TableMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str | None = None
    columns: dict[str, ColumnSource] = Field(default_factory=dict)

    @field_validator("columns", mode="before")
    @classmethod
    def _names_are_columns(cls, value: Any) -> Any:
        """A plain name stands for that source column."""
        if isinstance(value, dict):
            return {k: {"column": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    def sources(self) -> dict[str, ColumnSource]:
        return dict(self.columns)

    def date_formats(self) -> dict[str, str]:
        return {canon: src.format for canon, src in self.sources().items() if src.format is not None}


class ColumnMapping(BaseModel):
    """Per raw table: where it lives and how its columns are called."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customers: TableMapping = TableMapping()
    financial_statements: TableMapping = TableMapping()
    invoices: TableMapping = TableMapping()
    industry_signals: TableMapping = TableMapping()
    defaults: TableMapping = TableMapping()
    credit_insurance: TableMapping = TableMapping()

    @model_validator(mode="after")
    def _known_columns(self) -> "ColumnMapping":
        for table, contract in RAW_TABLES.items():
            unknown = set(getattr(self, table).columns) - set(contract.column_names)
            if unknown:
                raise ValueError(f"{table}.columns: {sorted(unknown)} are not columns of {table} "
                                 f"(columns: {', '.join(contract.column_names)})")
        return self

    def table(self, name: str) -> TableMapping:
        return getattr(self, name)


def load_mapping(path: str | Path) -> ColumnMapping:
    return load_toml(path, ColumnMapping, "mapping")
