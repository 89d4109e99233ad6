"""Typed configuration: one pydantic model per concern, unknown keys rejected, read once.

Defaults are the embedded demo settings. A TOML file (``--config FILE``) overrides any of
them; nothing here touches the disk or the environment until an entry point asks.
"""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GeneratorConfig(_Section):
    """Synthetic book: size, history and the economic scenario."""

    customers: int = Field(3000, ge=50, le=5_000_000)
    #: six years: a year of history, then room for training, validation and test windows each
    #: a full outcome horizon apart (the embargo of ``TrainingConfig``)
    years: int = Field(6, ge=3, le=20)
    #: first month of the book (a date; the book starts on the first of its month)
    start: str = "2020-01-01"
    seed: int = 7
    scenario: Literal["baseline", "recession"] = "baseline"

    @model_validator(mode="after")
    def _start_is_a_date(self) -> "GeneratorConfig":
        import datetime as dt

        try:
            day = dt.date.fromisoformat(self.start)
        except (TypeError, ValueError):
            raise ValueError(f"start {self.start!r} is not a date (use YYYY-MM-DD)") from None
        if not 1900 <= day.year <= 2200:
            raise ValueError(f"start {self.start!r} is outside 1900-2200")
        return self


class LightGBMConfig(_Section):
    """Gradient-boosting settings; monotone constraints come from the feature registry."""

    n_estimators: int = Field(600, ge=10, le=20_000)
    learning_rate: float = Field(0.03, gt=0, le=1)
    num_leaves: int = Field(15, ge=2, le=1024)
    #: rows per leaf; None: n_train / 2000 within [20, 100] (a 7,000-row table needs small
    #: leaves, a book of 250,000 snapshot rows large ones)
    min_child_samples: int | None = Field(None, ge=1)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(5.0, ge=0)
    early_stopping_rounds: int = Field(50, ge=1)
    num_threads: int = Field(2, ge=1)


class ScorecardConfig(_Section):
    """Points scaling: ``base_points`` at odds ``base_odds``:1 (good:bad), ``pdo`` to double."""

    base_points: float = 600.0
    base_odds: float = Field(50.0, gt=0)
    pdo: float = Field(20.0, gt=0)
    max_n_bins: int = Field(8, ge=2, le=30)


class TrainingConfig(_Section):
    """Snapshots, label horizon and the out-of-time split."""

    horizon_months: int = Field(12, ge=1, le=36)
    snapshot_months: int = Field(3, ge=1, le=12)
    history_months: int = Field(12, ge=3, le=36)
    test_snapshots: int = Field(2, ge=1)
    valid_snapshots: int = Field(1, ge=1)
    #: months between the last outcome a fit may know and the first date it is tested on: no
    #: training or validation row's outcome window (as_of + horizon) ends after the first test
    #: snapshot. None: the horizon (a 12-month label, a 12-month gap); 0 turns it off (the
    #: test then overlaps training outcomes and flatters the model)
    embargo_months: int | None = Field(None, ge=0, le=60)
    #: also keep training rows' outcome windows before the first validation snapshot, so the
    #: calibration (fitted on validation) sees margins of trees that never saw those outcomes
    embargo_validation: bool = True
    #: walk-forward backtest (``riskcast backtest``): this many origin dates, a quarter apart,
    #: the newest last; each trains on the outcomes known on its date and scores the next
    #: ``walk_forward_snapshots`` snapshots
    walk_forward_origins: int = Field(4, ge=1, le=40)
    walk_forward_snapshots: int = Field(2, ge=1, le=12)
    pd_floor: float = Field(0.0003, gt=0, lt=0.01)
    #: after early stopping, fit the same number of trees again on training + validation rows,
    #: so the model also learns from the months closest to today (the calibration stays the
    #: one fitted out of sample on the validation window)
    refit_with_validation: bool = True
    #: the refit is kept only if, on the training rows, it moves the mean PD and the spread of
    #: the calibrated log-odds by at most this share each (else the calibration would not fit it)
    refit_max_shift: float = Field(0.05, gt=0, le=1)
    seed: int = 42
    lightgbm: LightGBMConfig = LightGBMConfig()
    scorecard: ScorecardConfig = ScorecardConfig()
    promotion_max_auc_drop: float = Field(0.005, ge=0, le=0.5)
    promotion_min_auc: float = Field(0.60, ge=0.5, le=1.0)
    #: calibration is rejected when the Jeffreys test (99%) rejects more than this share of grades
    promotion_max_rejected_share: float = Field(0.10, ge=0, le=1)


class GradeBand(_Section):
    """One grade of the master scale: PD in ``[pd_min, pd_max)``, and its A-E band."""

    grade: str
    pd_max: float = Field(gt=0, le=1)
    band: Literal["A", "B", "C", "D", "E"]


def _default_scale() -> tuple[GradeBand, ...]:
    rows = [
        ("1", 0.003, "A"), ("2", 0.006, "A"), ("3", 0.010, "B"), ("4", 0.015, "B"),
        ("5", 0.022, "C"), ("6", 0.032, "C"), ("7", 0.045, "D"), ("8", 0.07, "D"),
        ("9", 0.12, "D"), ("10", 1.0, "E"),
    ]
    return tuple(GradeBand(grade=g, pd_max=p, band=b) for g, p, b in rows)


class MasterScaleConfig(_Section):
    """PD bands of the grades, best first; the last band must end at 1.

    The scale is configuration, never learned: every model version grades on the same edges,
    so grade 4 means the same PD range in all of them. A new scale is a new ``version``;
    grades are compared (migrations, grade changes) only between rows graded on the same one.
    """

    #: the scale's name, recorded in every bundle and scored file; change it with the edges
    version: str = Field("1", min_length=1, max_length=40, pattern=r"^[A-Za-z0-9._-]+$")
    grades: tuple[GradeBand, ...] = Field(default_factory=_default_scale)

    @model_validator(mode="after")
    def _ordered(self) -> "MasterScaleConfig":
        edges = [g.pd_max for g in self.grades]
        if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError("grades.pd_max must increase strictly from the best grade to the worst")
        if edges[-1] != 1.0:
            raise ValueError("the worst grade must end at pd_max = 1.0")
        return self


class PolicyConfig(_Section):
    """Credit policy: the customer's side of the limit, terms and decisions. Every threshold is
    here, with its default; the seller's own side is ``SellerConfig``."""

    #: the customer's capacity: a share of its annual revenue by A-E band (never above 15%),
    #: from statements whose period ended at most ``statement_max_age_months`` ago
    limit_share_of_revenue: dict[str, float] = Field(
        default_factory=lambda: {"A": 0.15, "B": 0.10, "C": 0.06, "D": 0.03, "E": 0.0}
    )
    statement_max_age_months: float = Field(18.0, gt=0, le=120)
    #: the customer's need: months of its purchases from us by band (what its terms and its
    #: usual delays keep open); with fresh statements the lower of capacity and need counts
    limit_months_of_purchases: dict[str, float] = Field(
        default_factory=lambda: {"A": 6.0, "B": 5.0, "C": 4.0, "D": 3.0, "E": 0.0}
    )
    #: the share of its limit a firm burning cash (negative operating cash flow in fresh
    #: statements) keeps: 0, no open credit
    burning_cash_share: float = Field(0.0, ge=0, le=1)
    #: no limit above this share of the customer's annual revenue, uplift included
    max_share_of_revenue: float = Field(0.15, ge=0, le=0.15)
    new_customer_share_of_order: float = Field(0.5, ge=0, le=1)
    #: loyalty: at least ``loyal_min_months`` of relationship, no invoice paid (or open) more
    #: than ``loyal_max_days_late`` days late in the last 24 months and none overdue now
    loyal_uplift: float = Field(0.20, ge=0, le=1)
    loyal_min_months: int = Field(24, ge=0)
    loyal_max_days_late: int = Field(15, ge=0, le=3650)
    terms_days: dict[str, int] = Field(
        default_factory=lambda: {"A": 90, "B": 60, "C": 30, "D": 30, "E": 0}
    )
    deposit_share: float = Field(0.30, ge=0, le=1)
    refer_margin: float = Field(0.10, ge=0, le=1)
    decline_overdue_days: int = Field(30, ge=0)
    decline_bands: tuple[str, ...] = ("E",)
    conditions_bands: tuple[str, ...] = ("D",)
    #: an early-payment discount offered to these bands: ``discount_share`` off when paid within
    #: ``discount_days`` (2/10 net 30); none by default
    discount_bands: tuple[str, ...] = ()
    discount_share: float = Field(0.02, gt=0, le=0.10)
    discount_days: int = Field(10, ge=1, le=60)

    @model_validator(mode="after")
    def _bands(self) -> "PolicyConfig":
        for key, table in (("limit_share_of_revenue", self.limit_share_of_revenue),
                           ("limit_months_of_purchases", self.limit_months_of_purchases),
                           ("terms_days", self.terms_days)):
            missing = {"A", "B", "C", "D", "E"} - set(table)
            if missing:
                raise ValueError(f"{key} needs a value for bands {sorted(missing)}")
        too_high = {b: v for b, v in self.limit_share_of_revenue.items() if not 0 <= v <= self.max_share_of_revenue}
        if too_high:
            raise ValueError(f"limit_share_of_revenue must lie in [0, max_share_of_revenue = "
                             f"{self.max_share_of_revenue}]; got {too_high}")
        months = {b: v for b, v in self.limit_months_of_purchases.items() if not 0 <= v <= 24}
        if months:
            raise ValueError(f"limit_months_of_purchases must lie in [0, 24]; got {months}")
        for key in ("decline_bands", "conditions_bands", "discount_bands"):
            unknown = set(getattr(self, key)) - {"A", "B", "C", "D", "E"}
            if unknown:
                raise ValueError(f"{key}: unknown bands {sorted(unknown)} (bands are A-E)")
        return self


class SellerConfig(_Section):
    """The seller's own side of the limits (the two-limit principle): no customer's limit above a
    share of the seller's monthly operating cash flow, the sum of all limits within a share of
    its annual revenue. Each cap is off while its figure is absent."""

    annual_revenue: float | None = Field(None, gt=0, le=1e15)
    monthly_operating_cash_flow: float | None = Field(None, gt=0, le=1e14)
    max_customer_share_of_monthly_ocf: float = Field(0.30, gt=0, le=10)
    max_total_share_of_revenue: float = Field(0.15, gt=0, le=10)
    #: when the limits pass the total, each band's unused limit is cut by a share in proportion
    #: to its weight: the weakest lose the most, the strongest keep the most room to grow
    cut_weights: dict[str, float] = Field(
        default_factory=lambda: {"A": 0.25, "B": 0.5, "C": 0.75, "D": 1.0, "E": 1.0}
    )

    @model_validator(mode="after")
    def _weights(self) -> "SellerConfig":
        if set(self.cut_weights) != {"A", "B", "C", "D", "E"} or any(w < 0 for w in self.cut_weights.values()):
            raise ValueError("cut_weights needs a weight >= 0 for each band A-E")
        if not any(self.cut_weights.values()):
            raise ValueError("cut_weights: at least one band must take cuts")
        return self

    @property
    def customer_cap(self) -> float:
        """The largest limit one customer may have (infinite when off)."""
        if self.monthly_operating_cash_flow is None:
            return math.inf
        return self.max_customer_share_of_monthly_ocf * self.monthly_operating_cash_flow

    @property
    def total_cap(self) -> float:
        """The most all limits together may reach (infinite when off)."""
        if self.annual_revenue is None:
            return math.inf
        return self.max_total_share_of_revenue * self.annual_revenue


#: how long the service gives a request before it answers 504 (BentoML's ``traffic.timeout``):
#: a decision's record must be committed well within it, or the caller retries one on record
REQUEST_TIMEOUT_S = 10


class ServingConfig(_Section):
    """When the service stops trusting the model and uses the scorecard instead."""

    #: above this share of missing features the scorecard answers; None: the bundle's own limit,
    #: the 99th percentile of the missing share in its training data
    max_missing_share: float | None = Field(None, ge=0, le=1)
    top_reasons: int = Field(4, ge=1, le=10)
    #: the model's time per order at order entry; slower, the scorecard answers
    model_budget_ms: float = Field(20.0, gt=0, le=10_000)
    model_name: str = "riskcast-pd"
    alias: str = "champion"
    #: where decisions are recorded: any SQLAlchemy URL; None: ``audit.sqlite`` in the work
    #: directory. ``RISKCAST_AUDIT_URL`` overrides it (keeps a password out of the file).
    audit_url: str | None = None
    #: the longest a decision waits to be put on record (another writer holding the log, a slow
    #: server); past it the order is refused (503, nothing recorded). At most half the
    #: request time-out, so that an answer on record always reaches its caller in time
    audit_budget_ms: float = Field(2000.0, gt=0, le=REQUEST_TIMEOUT_S * 1000 / 2)
    #: features and policy facts whose book value an order may replace (recorded as an
    #: override); any other supplied value must be one the book lacks. Checked against the
    #: served model's registry when the service starts. None by default: whatever declines or
    #: limits an order (overdue days, open receivables, ...) is the book's.
    allow_overrides: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _overrides_listed_once(self) -> "ServingConfig":
        names = list(self.allow_overrides)
        bad = sorted({n for n in names if not n.strip() or names.count(n) > 1})
        if bad:
            raise ValueError(f"allow_overrides: names must be non-empty and listed once; got {bad}")
        return self


class MonitoringConfig(_Section):
    """Drift thresholds (PSI bands 0.10 watch and 0.25 shift; share of drifted features), the
    backtest's traffic lights, and the severe alert that sends order entry to the scorecard."""

    psi_watch: float = Field(0.10, gt=0)
    psi_alert: float = Field(0.25, gt=0)
    drift_share_alert: float = Field(0.30, gt=0, le=1)
    psi_bins: int = Field(10, ge=2, le=100)
    #: a feature also drifted when its Wasserstein distance exceeds this many reference sd
    wasserstein_alert: float = Field(0.10, gt=0)
    #: confidence at which a backtest turns yellow and red
    backtest_yellow: float = Field(0.95, gt=0.5, lt=1)
    backtest_red: float = Field(0.999, gt=0.5, lt=1)
    #: severe alert: score PSI above this, or more than this share of features drifted, or a
    #: red backtest; then `riskcast monitor` puts serving in fallback mode (if `switch`). Set
    #: above the alert thresholds: an ordinary alert reports, only a severe one switches
    severe_score_psi: float = Field(0.50, gt=0)
    severe_drift_share: float = Field(0.50, gt=0, le=1)
    severe_on_red_backtest: bool = True
    switch: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> "MonitoringConfig":
        if self.psi_watch >= self.psi_alert:
            raise ValueError(f"psi_watch ({self.psi_watch}) must be below psi_alert ({self.psi_alert})")
        if self.backtest_yellow >= self.backtest_red:
            raise ValueError(f"backtest_yellow ({self.backtest_yellow}) must be below backtest_red ({self.backtest_red})")
        # a severe condition that is no alert would switch order entry without a report
        if self.severe_score_psi < self.psi_alert:
            raise ValueError(f"severe_score_psi ({self.severe_score_psi}) must not be below psi_alert ({self.psi_alert})")
        if self.severe_drift_share < self.drift_share_alert:
            raise ValueError(f"severe_drift_share ({self.severe_drift_share}) must not be below drift_share_alert "
                             f"({self.drift_share_alert})")
        return self


class RescoreConfig(_Section):
    """Batch rescoring of the book: chunk size (memory and the unit of resumption) and the
    loss given default of the expected-loss figure."""

    chunk_size: int = Field(20_000, ge=1, le=5_000_000)
    #: loss given default: share of the exposure lost when a customer defaults
    lgd: float = Field(0.45, ge=0, le=1)
    #: the receivables steps: the aging and DSO, the open invoices the desk shows, the
    #: collections worklist and stop list, the watchlist (false: the credit decisions alone)
    receivables: bool = True


class ReceivablesConfig(_Section):
    """Receivables on a date: the aging buckets (upper bounds of days past due; after
    ``current``, and the last open-ended) and the windows of the simple DSO and the CEI."""

    buckets: tuple[int, ...] = (30, 60, 90)
    #: days of credit sales the simple DSO and the average days delinquent divide by
    dso_days: int = Field(90, ge=7, le=730)
    #: days back from the as-of date the collection effectiveness index covers
    cei_days: int = Field(90, ge=7, le=730)
    #: the provision matrix's history: snapshots this many months apart, the newest a PD
    #: horizon (``training.horizon_months``) before the as-of date
    provision_snapshots: int = Field(4, ge=1, le=24)
    provision_step_months: int = Field(3, ge=1, le=12)

    @model_validator(mode="after")
    def _increasing(self) -> "ReceivablesConfig":
        b = self.buckets
        if not b or any(x <= 0 for x in b) or any(y <= x for x, y in zip(b, b[1:])):
            raise ValueError(f"buckets: increasing whole numbers of days past due > 0, e.g. [30, 60, 90]; got {list(b)}")
        return self


class CollectionStage(_Section):
    """A step of the dunning ladder: reached once an invoice is more than ``days`` past due.
    The stage that stops new orders takes its days from ``policy.decline_overdue_days`` (one
    figure: the worklist's stop list and order entry's decline are the same rule)."""

    name: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")
    action: str = Field(min_length=1, max_length=200)
    #: None: the stop stage, at ``policy.decline_overdue_days``
    days: int | None = Field(None, ge=0, le=3650)
    stops_orders: bool = False


def _default_ladder() -> tuple[CollectionStage, ...]:
    return (CollectionStage(name="reminder", days=7, action="friendly reminder"),
            CollectionStage(name="call", days=15, action="call to find out what blocks payment"),
            CollectionStage(name="demand", action="formal demand; new orders stop", stops_orders=True),
            CollectionStage(name="legal", days=45, action="legal proceedings start"),
            CollectionStage(name="agency", days=90, action="a collection agency, or a claim on the credit insurance"))


class CollectionsConfig(_Section):
    """The dunning ladder (stages in order of days past due, one of them stopping new orders)
    and the outcomes a collector records of a step."""

    stages: tuple[CollectionStage, ...] = Field(default_factory=_default_ladder)
    outcomes: tuple[str, ...] = ("done", "no answer", "promise to pay", "disputed", "paid", "escalated")

    @model_validator(mode="after")
    def _one_stop(self) -> "CollectionsConfig":
        names = [s.name for s in self.stages]
        if not names:
            raise ValueError("stages: the ladder needs at least its stop stage")
        if len(set(names)) != len(names):
            raise ValueError(f"stages: each name once; got {names}")
        stops = [s.name for s in self.stages if s.stops_orders]
        if len(stops) != 1:
            raise ValueError(f"stages: exactly one stage stops new orders (stops_orders = true); got {stops or 'none'}")
        if not self.outcomes or len(set(self.outcomes)) != len(self.outcomes) or \
                any(not o or len(o) > 32 or not o.isprintable() for o in self.outcomes):
            raise ValueError("outcomes: distinct printable names of at most 32 characters")
        return self

    def ladder(self, policy: "PolicyConfig") -> tuple[CollectionStage, ...]:
        """The stages with their days, the stop stage's from the policy."""
        return tuple(s if not s.stops_orders else s.model_copy(update={"days": policy.decline_overdue_days})
                     for s in self.stages)


class WatchlistConfig(_Section):
    """The early-warning triggers the rescore checks for every scored customer (each a
    customer on the watchlist, with its figures; where the desk exists, a review case)."""

    #: PD up by this share of the previous rescore's (1.0: doubled), and by at least ``pd_min_rise``
    pd_rise: float = Field(1.0, gt=0, le=100)
    pd_min_rise: float = Field(0.002, ge=0, le=1)
    #: grades down since the last review (the desk's, else the previous rescore's)
    grade_notches: int = Field(2, ge=1, le=20)
    #: mean days beyond terms of the last 3 months above the last 12 months' by this many days
    dbt_trend_days: float = Field(15.0, gt=0, le=365)
    #: monthly orders of the last ``orders_recent_months`` against the monthly mean of the 12
    #: months before: at least ``orders_high`` times, or at most ``orders_low`` times, for a
    #: customer that bought in ``orders_min_months`` of those 12 at least
    orders_recent_months: int = Field(3, ge=1, le=12)
    orders_high: float = Field(3.0, gt=1, le=1000)
    orders_low: float = Field(0.1, ge=0, lt=1)
    orders_min_months: int = Field(9, ge=1, le=12)
    #: the latest statement's period ended longer ago than this (customers that file)
    statements_overdue_months: float = Field(18.0, gt=0, le=120)
    #: a customer on the watchlist gets a review case on the desk, where the desk exists
    open_reviews: bool = True


class InsuranceConfig(_Section):
    """Trade credit insurance (the optional ``credit_insurance`` table): how long after the
    waiting period a claim may still be filed."""

    claim_filing_days: int = Field(60, ge=0, le=3650)


class LabelConfig(_Section):
    """What a default is. ``source``: "defaults" reads the defaults table; "ledger" derives
    defaults from the invoices (severe delinquency: an invoice more than ``days_past_due`` days
    past due with more than ``min_amount`` unpaid then, or written off); "auto" takes the
    defaults table when the data folder has one, else the ledger."""

    source: Literal["auto", "defaults", "ledger"] = "auto"
    days_past_due: int = Field(90, ge=1, le=720)
    min_amount: float = Field(0.0, ge=0)


class ModelFitConfig(_Section):
    """When the data lacks what the model relied on (``serving.model_fit``): a feature known for
    at least ``missing_below`` of the training rows is lost when known for less than that share
    of the customers now; the model does not fit when lost features carry at least
    ``max_lost_importance`` of its gain. ``action``: "reason" (every decision carries the note)
    or "scorecard" (the scorecard decides every customer of the rescore)."""

    missing_below: float = Field(0.5, gt=0, le=1)
    max_lost_importance: float = Field(0.25, gt=0, le=1)
    action: Literal["reason", "scorecard"] = "reason"


#: the desk's roles, least to most: a viewer reads; analysts, managers and the credit committee
#: decide within their amount; an admin manages users and keys and decides nothing (the one
#: who hands out authority does not use it)
ROLES = ("viewer", "analyst", "manager", "credit_committee", "admin")
BANDS = ("A", "B", "C", "D", "E")


class DeskConfig(_Section):
    """The credit desk: who may decide how much, how often an approved limit is reviewed, and
    the reason codes a decision names. Amounts are of exposure: the customer's open
    receivables with the order, or the limit set, whichever is larger."""

    #: the most exposure one person of each role may approve; above the highest, two
    #: different people holding one of the highest roles must approve
    authority: dict[str, float] = Field(
        default_factory=lambda: {"analyst": 50_000.0, "manager": 250_000.0, "credit_committee": 250_000.0})
    #: months an approved limit stands before its review, by A-E band: the riskiest monthly,
    #: C quarterly, A-B yearly
    review_months: dict[str, int] = Field(default_factory=lambda: {"A": 12, "B": 12, "C": 3, "D": 1, "E": 1})
    #: what a desk decision may give as its reason (code: text)
    reason_codes: dict[str, str] = Field(default_factory=lambda: {
        "FIN": "financial statements support it",
        "PAY": "payment record supports it",
        "SEC": "security obtained (guarantee, letter of credit, deposit)",
        "REL": "strategic or long-standing relationship",
        "INS": "receivable insured",
        "RISK": "risk too high for the exposure",
        "OVD": "overdue invoices not settled",
        "DOC": "information missing or out of date",
        "POL": "credit policy rule",
    })
    #: where cases, limits, users and the trail live: any SQLAlchemy URL; None: the audit
    #: log's database. ``RISKCAST_DESK_URL`` overrides it
    url: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> "DeskConfig":
        bad = sorted(set(self.authority) - {"analyst", "manager", "credit_committee"})
        if bad:
            raise ValueError(f"authority: {bad} cannot decide (roles that decide: analyst, manager, credit_committee)")
        if not self.authority or any(not (v > 0 and math.isfinite(v)) for v in self.authority.values()):
            raise ValueError("authority: each amount must be a finite number > 0, and one role at least must decide")
        if set(self.review_months) != set(BANDS) or any(not 1 <= m <= 36 for m in self.review_months.values()):
            raise ValueError(f"review_months: give every band {', '.join(BANDS)} a number of months in [1, 36]")
        if not self.reason_codes or any(not (k.strip() and v.strip()) for k, v in self.reason_codes.items()):
            raise ValueError("reason_codes: at least one, each code and text non-empty")
        return self


class RiskcastConfig(_Section):
    generator: GeneratorConfig = GeneratorConfig()
    label: LabelConfig = LabelConfig()
    training: TrainingConfig = TrainingConfig()
    master_scale: MasterScaleConfig = MasterScaleConfig()
    policy: PolicyConfig = PolicyConfig()
    seller: SellerConfig = SellerConfig()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    rescore: RescoreConfig = RescoreConfig()
    model_fit: ModelFitConfig = ModelFitConfig()
    desk: DeskConfig = DeskConfig()
    receivables: ReceivablesConfig = ReceivablesConfig()
    collections: CollectionsConfig = CollectionsConfig()
    watchlist: WatchlistConfig = WatchlistConfig()
    insurance: InsuranceConfig = InsuranceConfig()

    @model_validator(mode="after")
    def _ladder(self) -> "RiskcastConfig":
        stages = self.collections.stages
        for s in stages:
            if s.stops_orders and s.days is not None and s.days != self.policy.decline_overdue_days:
                raise ValueError(f"collections.stages: the stop stage {s.name!r} is at "
                                 f"policy.decline_overdue_days ({self.policy.decline_overdue_days}), one rule with "
                                 f"order entry's decline: leave its days out or set them equal, not {s.days}")
            if not s.stops_orders and s.days is None:
                raise ValueError(f"collections.stages: stage {s.name!r} needs its days")
        days = [s.days for s in self.collections.ladder(self.policy)]
        if any(b <= a for a, b in zip(days, days[1:])):
            named = ", ".join(f"{s.name} {d}" for s, d in zip(stages, days))
            raise ValueError(f"collections.stages: the days must increase along the ladder (the stop stage at "
                             f"policy.decline_overdue_days); got {named}")
        return self


M = TypeVar("M", bound=BaseModel)


def load_toml(path: str | Path, model: type[M], what: str) -> M:
    """Read a TOML file into a pydantic model; every error names the file and the key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path} does not exist", field=what) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} file {path} is not valid TOML: {exc}", field=what) from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        raise ConfigError(f"{what} file {path}: {key}: {err['msg']}", field=key) from None


def load_config(path: str | Path | None = None) -> RiskcastConfig:
    """Defaults, overridden by a TOML file when one is given. Errors name the key."""
    return RiskcastConfig() if path is None else load_toml(path, RiskcastConfig, "config")


def config_path_for(root: Path, explicit: str | Path | None = None) -> Path | None:
    """The configuration a command runs with: ``--config``, else the work directory's
    ``riskcast.toml`` when there is one, else the defaults (None)."""
    if explicit:
        return Path(explicit)
    own = WorkPaths(root=root).config
    return own if own.exists() else None


def workdir(explicit: str | Path | None = None) -> Path:
    """Where embedded state lives: ``--workdir``, else ``$RISKCAST_HOME``, else ``./riskcast-work``."""
    chosen = explicit or os.environ.get("RISKCAST_HOME") or "riskcast-work"
    return Path(chosen).expanduser().resolve()


class WorkPaths(BaseModel):
    """Where the embedded state of one work directory lives."""

    model_config = ConfigDict(frozen=True)

    root: Path

    @property
    def book(self) -> Path:
        return self.root / "book"

    @property
    def config(self) -> Path:
        """The work directory's own configuration (the demo writes its seller's figures there),
        read when no ``--config`` is given."""
        return self.root / "riskcast.toml"

    @property
    def store(self) -> Path:
        return self.root / "features.sqlite"

    @property
    def open_invoices(self) -> Path:
        """The invoices open on the store's date, beside it (the desk's customer page)."""
        return self.root / "open_invoices.parquet"

    @property
    def collections(self) -> Path:
        """The collections worklist of the store's date, beside it (the desk's collections page)."""
        return self.root / "collections.parquet"

    @property
    def scored(self) -> Path:
        return self.root / "scored_book.parquet"

    @property
    def drift(self) -> Path:
        return self.root / "drift"

    @property
    def audit(self) -> Path:
        return self.root / "audit.sqlite"

    @property
    def fallback_switch(self) -> Path:
        return self.root / "serving" / "fallback.json"

    @property
    def model_cache(self) -> Path:
        return self.root / "serving" / "models"
