"""Training sets: quarterly as-of snapshots, the 12-month default label, the embargoed out-of-time split."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from riskcast.config import TrainingConfig
from riskcast.data.io import RawTables
from riskcast.errors import InputError
from riskcast.features.build import build_features
from riskcast.features.registry import FeatureRegistry

LABEL = "default_12m"
TRUE_PD = "true_pd"
#: the true PD also knowing the distress that has not shown in the ledger yet (synthetic books)
HINDSIGHT_PD = "true_pd_hindsight"


def resolve_embargo(horizon_months: int, embargo_months: int | None) -> int:
    """The embargo in months: None means the label horizon (the outcomes a fit may know end
    where the window it is judged on begins), 0 means none."""
    embargo = horizon_months if embargo_months is None else embargo_months
    if embargo < 0:
        raise InputError(f"embargo_months: must be 0 or more, got {embargo}", field="embargo_months")
    return int(embargo)


def snapshots_needed(valid_snapshots: int, test_snapshots: int, snapshot_months: int, embargo_months: int,
                     embargo_validation: bool = True) -> int:
    """The fewest evenly spaced snapshots an embargoed split can use: the test window, a gap of
    ``embargo_months`` (at least one snapshot) before it, the validation window, the same gap
    before that when ``embargo_validation``, and one training snapshot."""
    gap = max(1, -(-embargo_months // snapshot_months))
    gap_valid = gap if embargo_validation else 1
    return (test_snapshots - 1) + gap + (valid_snapshots - 1) + gap_valid + 1


def snapshot_dates(tables: RawTables, cfg: TrainingConfig) -> list[pd.Timestamp]:
    """Quarter starts with ``history_months`` of history before and a full horizon after; refused
    (before any feature is built) when there are too few for the embargoed split."""
    first = tables.invoices["issue_date"].min()
    end = tables.data_end
    start = (first + pd.DateOffset(months=cfg.history_months)).to_period("Q").to_timestamp()
    if start < first + pd.DateOffset(months=cfg.history_months):
        start = (start + pd.DateOffset(months=3)).to_period("Q").to_timestamp()
    last = end + pd.Timedelta(days=1) - pd.DateOffset(months=cfg.horizon_months)
    dates = list(pd.date_range(start, last, freq=f"{cfg.snapshot_months}MS"))
    embargo = resolve_embargo(cfg.horizon_months, cfg.embargo_months)
    need = snapshots_needed(cfg.valid_snapshots, cfg.test_snapshots, cfg.snapshot_months, embargo,
                            cfg.embargo_validation)
    if len(dates) < need:
        months = cfg.history_months + (need - 1) * cfg.snapshot_months + cfg.horizon_months
        have = (end.year - first.year) * 12 + end.month - first.month + 1
        raise InputError(
            f"data: the book spans {first.date()}..{end.date()} ({have} months), which gives {len(dates)} "
            f"snapshot(s) with {cfg.history_months} months of history and a {cfg.horizon_months}-month outcome; "
            f"training needs at least {need} ({cfg.test_snapshots} test, {cfg.valid_snapshots} validation, "
            f"1 training, with a {embargo}-month embargo before the test"
            + (" and the validation" if cfg.embargo_validation else "")
            + f" window), that is at least {months} months ({months / 12:.2f} years) of data", field="data")
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


def labelled_snapshots(tables: RawTables, cfg: TrainingConfig, registry: FeatureRegistry | None = None,
                       progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Every quarterly snapshot of the book with its features and its label: the one table
    training, the walk-forward backtest and the training benchmark learn from."""
    say = progress or (lambda _m: None)
    dates = snapshot_dates(tables, cfg)
    say(f"building features for {len(dates)} quarterly snapshots {dates[0].date()}..{dates[-1].date()}")
    return attach_labels(build_features(tables, dates, registry, progress=say), tables, cfg.horizon_months)


@dataclass(frozen=True)
class Split:
    """Training, validation (early stopping, calibration) and test rows, and the embargo kept
    between them (None: no time split, e.g. a cross-validation fold)."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    embargo_months: int | None = None
    embargo_validation: bool = False

    def windows(self) -> dict[str, str]:
        """Dates of each window and the embargo, as strings (MLflow tags, the model card)."""
        if "as_of" not in self.train.columns:
            return {}

        def span(df: pd.DataFrame) -> str:
            if df.empty or "as_of" not in df.columns:
                return "none"
            return f"{pd.Timestamp(df['as_of'].min()).date()}..{pd.Timestamp(df['as_of'].max()).date()}"
        out = {"train_window": span(self.train), "valid_window": span(self.valid), "test_window": span(self.test)}
        if self.embargo_months is not None:
            out["embargo_months"] = str(self.embargo_months)
            out["embargo_validation"] = str(self.embargo_validation).lower()
        return out


def _month_step(dates: Sequence[pd.Timestamp]) -> int:
    """The smallest whole-month gap between consecutive snapshot dates (at least 1)."""
    gaps = [(b.year - a.year) * 12 + b.month - a.month for a, b in zip(dates, dates[1:])]
    return max(1, min((g for g in gaps if g > 0), default=1))


def embargoed_dates(dates: Sequence[pd.Timestamp], first_test: pd.Timestamp, valid_snapshots: int,
                    embargo_months: int, embargo_validation: bool = True
                    ) -> tuple[list[pd.Timestamp], list[pd.Timestamp]]:
    """Training and validation dates before a window starting on ``first_test``: validation is
    the newest ``valid_snapshots`` dates whose ``as_of + embargo`` is at most ``first_test``,
    training every earlier date whose ``as_of + embargo`` is at most the first validation date
    (with ``embargo_validation``, else every earlier date). Either list may come back short;
    the caller decides what that means."""
    gap = pd.DateOffset(months=embargo_months)
    first_test = pd.Timestamp(first_test)
    before = sorted(pd.Timestamp(d) for d in dates if pd.Timestamp(d) < first_test)
    valid_d = [d for d in before if d + gap <= first_test][-valid_snapshots:]
    if not valid_d:
        return [], []
    train_d = [d for d in before if d < valid_d[0] and (not embargo_validation or d + gap <= valid_d[0])]
    return train_d, valid_d


def split_out_of_time(df: pd.DataFrame, valid_snapshots: int, test_snapshots: int, label: str = LABEL, *,
                      horizon_months: int = 12, embargo_months: int | None = None,
                      embargo_validation: bool = True) -> Split:
    """The newest ``test_snapshots`` dates test; validation and training come before them, each
    window's outcomes (``as_of + embargo``) ending by the start of the next, so no test row's
    outcome was known when the model was fitted. Dates in the gaps are left out."""
    if valid_snapshots < 1 or test_snapshots < 1:
        raise InputError(f"as_of: need at least one validation and one test snapshot, got {valid_snapshots} and "
                         f"{test_snapshots}", field="as_of")
    if "as_of" not in df.columns:
        raise InputError("as_of: the table has no as_of column to split on", field="as_of")
    embargo = resolve_embargo(horizon_months, embargo_months)
    dates = sorted(pd.Timestamp(d) for d in df["as_of"].unique())
    train_d: list[pd.Timestamp] = []
    valid_d: list[pd.Timestamp] = []
    test_d: list[pd.Timestamp] = []
    if len(dates) > test_snapshots:
        test_d = dates[-test_snapshots:]
        train_d, valid_d = embargoed_dates(dates[:-test_snapshots], test_d[0], valid_snapshots, embargo,
                                           embargo_validation)
    if len(valid_d) < valid_snapshots or not train_d:
        scope = " and the validation" if embargo_validation else ""
        what = (f"cannot be split into training, {valid_snapshots} validation and {test_snapshots} test snapshot(s) "
                f"with a {embargo}-month embargo before the test{scope} window")
        if len(dates) < 2:
            raise InputError(f"as_of: {len(dates)} snapshot date(s) {what}: that needs at least "
                             f"{valid_snapshots + test_snapshots + 1} dates, spanning at least "
                             f"{embargo * (2 if embargo_validation else 1)} months", field="as_of")
        step = _month_step(dates)
        need = snapshots_needed(valid_snapshots, test_snapshots, step, embargo, embargo_validation)
        span = (dates[-1].year - dates[0].year) * 12 + dates[-1].month - dates[0].month
        raise InputError(
            f"as_of: {len(dates)} snapshot(s) {dates[0].date()}..{dates[-1].date()}, spanning {span} months, {what}: "
            f"that needs at least {need} snapshots {step} month(s) apart, spanning {(need - 1) * step} months",
            field="as_of")
    train = df[df["as_of"].isin(train_d)]
    valid = df[df["as_of"].isin(valid_d)]
    test = df[df["as_of"].isin(test_d)]
    for name, part in (("train", train), ("validation", valid), ("test", test)):
        if part[label].nunique() < 2:
            raise InputError(f"{label}: the {name} window has only one class; more data is needed", field=label)
    return Split(train.reset_index(drop=True), valid.reset_index(drop=True), test.reset_index(drop=True),
                 embargo_months=embargo, embargo_validation=embargo_validation)


def outcome_overlap(split: Split, horizon_months: int) -> dict[str, str | int | bool]:
    """How far the newest training and validation outcome windows (``as_of + horizon``) reach
    past the first validation and test dates, in days (0: not at all). For the model card and
    for tests: an embargoed split has ``overlap`` False."""
    for name, part in (("train", split.train), ("validation", split.valid), ("test", split.test)):
        if "as_of" not in part.columns or part.empty:
            raise InputError(f"as_of: the {name} window has no dated rows", field="as_of")
    horizon = pd.DateOffset(months=horizon_months)
    train_end = pd.Timestamp(split.train["as_of"].max()) + horizon
    valid_end = pd.Timestamp(split.valid["as_of"].max()) + horizon
    first_valid = pd.Timestamp(split.valid["as_of"].min())
    first_test = pd.Timestamp(split.test["as_of"].min())
    past = {
        "train_past_valid_days": max(0, (train_end - first_valid).days),
        "train_past_test_days": max(0, (train_end - first_test).days),
        "valid_past_test_days": max(0, (valid_end - first_test).days),
    }
    return {
        "horizon_months": horizon_months,
        "train_outcome_end": str(train_end.date()), "valid_outcome_end": str(valid_end.date()),
        "first_valid": str(first_valid.date()), "first_test": str(first_test.date()),
        **past, "overlap": any(v > 0 for v in past.values()),
    }
