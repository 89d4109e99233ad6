"""Training sets: quarterly as-of snapshots, the 12-month default label, the out-of-time split."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from riskcast.config import TrainingConfig
from riskcast.data.io import RawTables
from riskcast.errors import InputError

LABEL = "default_12m"
TRUE_PD = "true_pd"
#: the true PD also knowing the distress that has not shown in the ledger yet (synthetic books)
HINDSIGHT_PD = "true_pd_hindsight"


def snapshot_dates(tables: RawTables, cfg: TrainingConfig) -> list[pd.Timestamp]:
    """Quarter starts with ``history_months`` of history before and a full horizon after."""
    first = tables.invoices["issue_date"].min()
    end = tables.data_end
    start = (first + pd.DateOffset(months=cfg.history_months)).to_period("Q").to_timestamp()
    if start < first + pd.DateOffset(months=cfg.history_months):
        start = (start + pd.DateOffset(months=3)).to_period("Q").to_timestamp()
    last = end + pd.Timedelta(days=1) - pd.DateOffset(months=cfg.horizon_months)
    dates = list(pd.date_range(start, last, freq=f"{cfg.snapshot_months}MS"))
    need = cfg.test_snapshots + cfg.valid_snapshots + 1
    if len(dates) < need:
        raise InputError(
            f"data: the book spans {first.date()}..{end.date()}, which gives {len(dates)} snapshot(s) "
            f"with {cfg.history_months} months of history and a {cfg.horizon_months}-month outcome; "
            f"training needs at least {need} (train, validation, test)", field="data")
    return dates


def default_within(rows: pd.DataFrame, defaults: pd.DataFrame, horizon_months: int) -> pd.Series:
    """1 where the customer's first default falls in ``(as_of, as_of + horizon]``, else 0.

    ``rows`` holds ``customer_id`` and ``as_of``; ``defaults`` holds ``customer_id`` and
    ``default_date``. The one definition of the label, for training and for backtests."""
    first_default = defaults.groupby("customer_id")["default_date"].min()
    d = rows["customer_id"].map(first_default)
    horizon_end = rows["as_of"] + pd.DateOffset(months=horizon_months)
    return ((d > rows["as_of"]) & (d <= horizon_end)).astype("int8")


def attach_labels(features: pd.DataFrame, tables: RawTables, horizon_months: int) -> pd.DataFrame:
    """Add ``default_12m`` (a default in ``(as_of, as_of + horizon]``) and, if known, the true PD."""
    out = features.copy()
    out[LABEL] = default_within(out, tables.defaults, horizon_months)
    if tables.truth is not None:
        truth = tables.truth.rename(columns={"pd_12m": TRUE_PD, "pd_12m_hindsight": HINDSIGHT_PD})
        known = [c for c in (TRUE_PD, HINDSIGHT_PD) if c in truth.columns]
        out = out.merge(truth[["customer_id", "as_of", *known]], on=["customer_id", "as_of"], how="left")
    return out


@dataclass(frozen=True)
class Split:
    """Training, validation (early stopping, calibration) and test rows."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame

    def windows(self) -> dict[str, str]:
        if "as_of" not in self.train.columns:
            return {}

        def span(df: pd.DataFrame) -> str:
            return f"{pd.Timestamp(df['as_of'].min()).date()}..{pd.Timestamp(df['as_of'].max()).date()}"
        return {"train_window": span(self.train), "valid_window": span(self.valid), "test_window": span(self.test)}


def split_out_of_time(df: pd.DataFrame, valid_snapshots: int, test_snapshots: int, label: str = LABEL) -> Split:
    """Oldest snapshots train, the next ones validate, the newest ones test."""
    dates = sorted(df["as_of"].unique())
    if len(dates) < valid_snapshots + test_snapshots + 1:
        raise InputError(f"as_of: {len(dates)} snapshot(s) cannot be split into train, validation and test", field="as_of")
    test_d = dates[-test_snapshots:]
    valid_d = dates[-(test_snapshots + valid_snapshots):-test_snapshots]
    train = df[df["as_of"] < valid_d[0]]
    valid = df[df["as_of"].isin(valid_d)]
    test = df[df["as_of"].isin(test_d)]
    for name, part in (("train", train), ("validation", valid), ("test", test)):
        if part[label].nunique() < 2:
            raise InputError(f"{label}: the {name} window has only one class; more data is needed", field=label)
    return Split(train.reset_index(drop=True), valid.reset_index(drop=True), test.reset_index(drop=True))
