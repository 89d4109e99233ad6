"""The scoring core: customer and order in, PD, grade, limit, terms, decision and reasons out.

The service and batch rescoring both call ``ScoringCore.decide`` on a frame of feature rows,
so an order scored over HTTP and the same customer in the nightly rescore get the same answer.
The core always answers: when the model cannot, the bundle's scorecard does, and when neither
can, the decision is ``refer`` with the reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from riskcast.config import RiskcastConfig
from riskcast.errors import (AuditUnavailableError, ConfigError, InputError, OverrideRefusedError,
                             RequestConflictError, StoreUnavailableError, UnknownCustomerError)
from riskcast.features.coverage import COVERAGE_KEY, coverage
from riskcast.features.registry import POLICY_FACTS, REQUEST_FACTS, FeatureRegistry, default_registry
from riskcast.features.store import FeatureStore
from riskcast.training.tracking import LoadedModel

from .audit import AuditLog, Evidence
from .desk.orders import open_cases, referral, review_referral, standing_limit
from .model_fit import bundle_fit
from .policy import PolicyInputs, apply_policy
from .reasons import reason_columns, top_reasons
from .switch import FallbackSwitch

if TYPE_CHECKING:
    from .desk.store import DeskStore

#: what a customer without history or statements is assumed to have: each fact's declared
#: default, the fill training gives it too (``FeatureRegistry.fill_row`` lays it over a NaN)
CONTEXT_DEFAULTS: dict[str, float] = {f.name: f.default for f in POLICY_FACTS}


@dataclass(frozen=True)
class Order:
    customer_id: str
    order_amount: float
    requested_terms_days: int | None = None
    features: Mapping[str, float] | None = None
    request_id: str | None = None


#: a row's store registry version when the row was not read from the store
_NOT_FROM_STORE = object()


#: the store's meta entry with the sum of the book's limits in the rescore that wrote it
BOOK_LIMITS_TOTAL = "book_limits_total"


def _book_total(store: FeatureStore) -> float:
    """The sum of all limits of the book the store was written from; NaN when not recorded.
    A store that cannot be read raises ``StoreUnavailableError``, as its lookup does."""
    try:
        return float(store.meta_.get(BOOK_LIMITS_TOTAL, "nan"))
    except ValueError:  # the entry is not a number: no total known
        return math.nan


def _unscored(reason: object) -> str:
    """The decision's reason when neither the model nor the scorecard could score the customer."""
    return f"no score, so a person decides: {reason}"


def _kind(exc: BaseException) -> str:
    """A scoring failure said by its kind: a built-in exception's class name, else only that
    the model's library failed (its exceptions carry its name, their messages file paths)."""
    return type(exc).__name__ if type(exc).__module__ == "builtins" else "library error"


def _zero_nan(x: np.ndarray) -> np.ndarray:
    """NaN as 0 (``np.nan_to_num`` costs ~13 us a call on tiny arrays; inputs are finite)."""
    return np.where(np.isnan(x), 0.0, x)


@dataclass(frozen=True)
class _Rows:
    """The rows to decide as arrays: a one-row DataFrame costs ten times a numpy row, and
    order entry decides one row at a time."""

    ids: list[str]
    X: np.ndarray                   # registry features, registry order
    facts: dict[str, np.ndarray]    # policy facts (CONTEXT_COLUMNS)
    #: per row, the as-of date of the store row it was read from (None: not from the store)
    store_as_of: list[str | None] | None = None
    #: per row, the registry version of the store row it was read from (_NOT_FROM_STORE: none)
    store_registry: list[Any] | None = None

    @classmethod
    def from_frame(cls, df: pd.DataFrame, registry: FeatureRegistry,
                   matrix: Callable[[pd.DataFrame], np.ndarray] | None = None) -> "_Rows":
        """``matrix``: the model's way from a frame to its rows (``ModelBundle.matrix``: the
        categories as their codes at fit), else the registry's columns as float."""
        facts = {c: (df[c].to_numpy(dtype=np.float64, na_value=np.nan) if c in df.columns
                     else np.full(len(df), default)) for c, default in CONTEXT_DEFAULTS.items()}
        X = matrix(df) if matrix is not None else df[registry.names].to_numpy(dtype=np.float64, na_value=np.nan)
        return cls([str(c) for c in df["customer_id"]], X, facts)

    @classmethod
    def from_dicts(cls, rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> "_Rows":
        X = np.array([[r[n] for n in names] for r in rows], dtype=np.float64).reshape(len(rows), len(names))
        facts = {c: np.array([r[c] for r in rows], dtype=np.float64) for c in CONTEXT_DEFAULTS}
        # which store row each came from (``lookup`` marks it in_book): its date is answered
        # and its registry version checked against the model's (a plain loop: a quarter of the
        # cost of three comprehensions on one order)
        as_of: list[str | None] = []
        versions: list[Any] = []
        for r in rows:
            if r.get("in_book"):
                a = r.get("as_of")
                as_of.append(a if isinstance(a, str) else None)
                versions.append(r.get("registry_version"))
            else:
                as_of.append(None)
                versions.append(_NOT_FROM_STORE)
        return cls([str(r["customer_id"]) for r in rows], X, facts, store_as_of=as_of, store_registry=versions)


@dataclass
class _Scored:
    pd_: np.ndarray
    logit: np.ndarray
    impact: np.ndarray
    kind: np.ndarray
    fallback_reason: np.ndarray
    failed: np.ndarray
    #: per row, the fallback imposed from outside the inputs (fallback mode, the time budget),
    #: which a replay must apply again rather than measure again; None where none was
    imposed: np.ndarray | None = None


class ScoringCore:
    """Holds the loaded bundle, the feature store and the configuration; stateless per call."""

    def __init__(self, cfg: RiskcastConfig, model: LoadedModel | None, store: FeatureStore | None,
                 model_error: str | None = None, registry: FeatureRegistry | None = None,
                 switch: FallbackSwitch | None = None, audit: AuditLog | None = None,
                 desk: "DeskStore | None" = None) -> None:
        self.cfg = cfg
        self.model = model
        self.store = store
        #: monitoring's order to decide with the scorecard, read on every call
        self.switch = switch
        #: where order-entry decisions are recorded before they are returned
        self.audit = audit
        #: the credit desk: approved limits read per order, referrals opened as cases
        self.desk = desk
        self.model_error = model_error
        self.registry = model.bundle.registry if model is not None else (registry or default_registry())
        #: what a request may supply: model features and policy facts, with their valid ranges
        if model is not None and model.bundle.booster is not None:
            try:  # build the leaf tables now, not inside the first order's time budget
                model.bundle.attribution
            except Exception:  # noqa: BLE001 - the same error falls back to the scorecard per order
                pass
        self._names = self.registry.names
        bundle = model.bundle if model is not None else None
        #: a frame's rows as the model takes them, and the categories of its codes (the reasons')
        self._matrix = bundle.matrix if bundle is not None else None
        self._labels = bundle.codes.labels if bundle is not None and self.registry.categorical else None
        #: the registry's version is a hash of its definitions: taken once, compared per order
        self.registry_version_ = self.registry.version
        self._blank = dict.fromkeys(self._names, math.nan) | CONTEXT_DEFAULTS
        self._relationship = self._names.index("relationship_months") if "relationship_months" in self.registry else None
        self._statement_age = self._names.index("statement_age_days") if "statement_age_days" in self.registry else None
        self.input_ranges_ = {**self.registry.valid_ranges, **{f.name: (f.valid_min, f.valid_max) for f in REQUEST_FACTS}}
        unknown = [n for n in cfg.serving.allow_overrides if n not in self.input_ranges_]
        if unknown:
            raise ConfigError(f"serving.allow_overrides: {', '.join(map(repr, unknown))} is no feature or policy fact "
                              f"a request may supply (known: {', '.join(self.input_ranges_)})",
                              field="serving.allow_overrides")
        self._allow_overrides = frozenset(cfg.serving.allow_overrides)
        #: the configuration as recorded with every decision: its text once, its hash per row
        self.config_json = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        self.config_fingerprint = hashlib.sha256(self.config_json.encode()).hexdigest()
        self._record_names = [*self._names, *CONTEXT_DEFAULTS]
        self._record_values = operator.itemgetter(*self._record_names)  # a tuple: features and facts are many

    def compile_in_background(self) -> threading.Thread | None:
        """Compile the model's trees in a thread of their own (the C compiler runs in its own
        process, a few seconds once per model version): every call takes them once ready, and
        none waits for them. Returns the thread; None without trees to compile."""
        if self.model is None or self.model.bundle.booster is None:
            return None
        bundle = self.model.bundle

        def build() -> None:
            try:
                bundle.attribution.compiled()
            except Exception:  # noqa: BLE001 - the leaf tables failed: every order falls back alike
                pass
        thread = threading.Thread(target=build, name="riskcast-compile", daemon=True)
        thread.start()
        return thread

    def with_model(self, model: LoadedModel | None, model_error: str | None = None) -> "ScoringCore":
        """A core for another model sharing this one's store, switch and audit log: a reload
        swaps the whole core, so a request in flight finishes on the model it started with."""
        return ScoringCore(self.cfg, model, self.store, model_error, switch=self.switch, audit=self.audit,
                           desk=self.desk)

    @property
    def max_missing_share(self) -> float:
        """The highest share of missing features (of what a customer of its kind can have,
        ``features.coverage``) the model decides: the configured one, else the one the bundle
        learned from its training data (a bundle trained before counted all features)."""
        if self.cfg.serving.max_missing_share is not None:
            return self.cfg.serving.max_missing_share
        return float(self.model.bundle.metadata.get("max_missing_share", 0.5)) if self.model else 0.5

    def store_status(self) -> dict[str, Any]:
        """What /readyz says of the order-entry store: whether it can be read (when not, every
        order is refused), how old it is and whether it was built with the model's feature
        registry (when not, every book customer is referred on the scorecard)."""
        mine = self.registry_version_
        out: dict[str, Any] = {"available": False, "as_of": None, "registry_version": None,
                               "model_registry_version": mine, "matches_model": False}
        if self.store is None:
            return {**out, "note": "no order-entry store: only customers supplying their features are decided"}
        try:
            as_of, version = self.store.as_of_, self.store.registry_version_
        except StoreUnavailableError as exc:  # said without the file's path
            return {**out, "note": f"{exc}; every order is refused until it can be read"}
        out.update(available=True, as_of=as_of, registry_version=version, matches_model=version == mine)
        if as_of is None:
            out["note"] = "the store was written before stores recorded their as-of date; the next rescore records it"
        fit = self._model_fit(self.store.meta_.get(COVERAGE_KEY))
        if fit is not None:
            out["model_fit"] = fit
        return out

    def _model_fit(self, coverage: str | None) -> dict[str, Any] | None:
        """``serving.model_fit`` of the loaded model against the book the store was built from
        (its feature coverage, recorded by the rescore); None when either side lacks the record."""
        if coverage is None or self.model is None:
            return None
        try:
            data = json.loads(coverage)
        except ValueError:
            return None
        fit = bundle_fit(self.model.bundle, data, self.cfg.model_fit) if isinstance(data, dict) else None
        return None if fit is None else {"fits": fit.fits, "lost_importance": round(fit.lost_importance, 4),
                                         "lost_features": [f["feature"] for f in fit.lost], "note": fit.note()}

    # -- inputs -------------------------------------------------------------------------
    def _check_overrides(self, features: Mapping[str, float]) -> None:
        ranges = self.input_ranges_
        for name, value in features.items():
            where = f"features.{name}"
            if name not in ranges:
                raise InputError(f"{where}: unknown feature (known: {', '.join(ranges)})", field=where)
            if value is None:
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise InputError(f"{where}: must be a finite number, got {value!r}", field=where)
            lo, hi = ranges[name]
            if not lo <= value <= hi:
                raise InputError(f"{where}: {value!r} is outside the valid range [{lo}, {hi}]", field=where)

    def _replacements(self, features: Mapping[str, float | None], book: Mapping[str, Any],
                      customer_id: str) -> tuple[dict[str, float], set[str]]:
        """Of a book customer's supplied values: the book's values they replace (name: the
        book's value), each allowed by ``serving.allow_overrides`` or refused here, and the
        names supplied with the value the book already holds (no replacement). A value the
        book lacks (missing) may always be supplied."""
        replaced: dict[str, float] = {}
        same: set[str] = set()
        for name, value in features.items():
            held = book.get(name)
            if not isinstance(held, (int, float)) or held != held:  # the book lacks it
                continue
            if value is not None and float(value) == held:
                same.add(name)
                continue
            if name not in self._allow_overrides:
                where = f"features.{name}"
                raise OverrideRefusedError(
                    f"{where}: the book holds {held!r} for customer {customer_id!r}; a request may supply only what "
                    f"the book lacks, and serving.allow_overrides does not let it replace {name}", field=where)
            replaced[name] = float(held)
        return replaced, same

    def lookup(self, order: Order) -> dict[str, Any]:
        """The customer's latest features, with the request's values laid over them: for a
        customer in the book only what the book lacks, or what ``serving.allow_overrides``
        lets it replace (listed under ``overridden`` with the book's values). What is still
        missing then takes the registry's fills, as in training: a new customer's row is one
        training could have held (no invoices: 0 of them), and so is what the audit records.

        A store that is configured but cannot be read refuses every order with
        ``StoreUnavailableError`` (503), a new customer's too: who is in the book cannot be
        told, so neither can what the request may supply."""
        if not isinstance(order.order_amount, (int, float)) or not math.isfinite(order.order_amount) or order.order_amount <= 0:
            raise InputError(f"order_amount: must be a finite number > 0, got {order.order_amount!r}", field="order_amount")
        terms = order.requested_terms_days
        if terms is not None and (isinstance(terms, bool) or not isinstance(terms, int) or not 0 <= terms <= 365):
            raise InputError(f"requested_terms_days: must be a whole number of days in [0, 365], got {terms!r}", field="requested_terms_days")
        overrides = dict(order.features or {})
        self._check_overrides(overrides)
        row = self.store.get(order.customer_id) if self.store is not None else None
        if row is None and not overrides:
            raise UnknownCustomerError(
                f"customer_id: {order.customer_id!r} is not in the book and the request supplies no features",
                field="customer_id")
        replaced: dict[str, float] = {}
        if row is not None and overrides:
            replaced, same = self._replacements(overrides, row, order.customer_id)
            for name in same:  # the book's own value stays (0.0 and -0.0 compare equal)
                del overrides[name]
        base: dict[str, Any] = self._blank.copy()
        if row is None and self.store is not None:  # a customer new to the book adds to its limits
            base["book_limits_total"] = _book_total(self.store)
        base.update(row or {})
        base.update({k: (math.nan if v is None else float(v)) for k, v in overrides.items()})
        base.update(self.registry.fill_row(base))
        base["customer_id"] = order.customer_id
        base["in_book"] = row is not None
        base["overridden"] = replaced
        # the desk's limit, never a stale copy in the store's row
        base["approved_limit"], base["approved_terms_days"], base["review_due"] = (
            standing_limit(self.desk, order.customer_id) if self.desk is not None else (math.nan, math.nan, None))
        return base

    def order_rows(self, bases: Sequence[Mapping[str, Any]]) -> _Rows:
        """The arrays orders are decided on, from their ``lookup`` rows: order entry's only way
        from a looked-up row to what the model is given."""
        return _Rows.from_dicts(bases, self._names)

    def model_input(self, order: Order) -> tuple[np.ndarray, dict[str, float]]:
        """What an order's customer is decided on, as ``score_order`` builds it: the model's row
        (registry features, registry order) and the policy facts."""
        rows = self.order_rows([self.lookup(order)])
        return rows.X[0].copy(), {name: float(v[0]) for name, v in rows.facts.items()}

    # -- scoring ------------------------------------------------------------------------
    def _foreign_rows(self, rows: _Rows) -> list[int]:
        """The rows read from a store built with another feature registry than the model's
        (one comparison per row: the store reader knows its file's version)."""
        versions = rows.store_registry
        if versions is None:
            return []
        mine = self.registry_version_
        return [i for i, v in enumerate(versions) if v is not _NOT_FROM_STORE and v != mine]

    def _score(self, rows: _Rows, forced_reason: str | None, budget_s: float | None) -> _Scored:
        X = rows.X
        n = len(X)
        s = _Scored(np.full(n, np.nan), np.full(n, np.nan), np.zeros((n, len(self.registry))),
                    np.full(n, "lightgbm", dtype=object), np.full(n, None, dtype=object), np.zeros(n, dtype=bool))
        if self.model is None:
            s.failed[:] = True
            s.kind[:] = None
            s.fallback_reason[:] = f"no model available: {self.model_error or 'not loaded'}"
            return s
        bundle = self.model.bundle
        # too thin for the model: measured against what a customer of its kind can have
        cover = coverage(X, self.registry)
        limit = self.max_missing_share
        use_card = cover.share > limit
        s.fallback_reason[use_card] = [cover.shortfall(i, limit) for i in np.flatnonzero(use_card)]
        if bundle.booster is None:
            use_card[:] = True
            s.fallback_reason[:] = bundle.booster_error or "model file unreadable"
        elif forced_reason:
            use_card[:] = True
            s.fallback_reason[:] = forced_reason
            s.imposed = np.full(n, None, dtype=object)
            s.imposed[:] = forced_reason
        foreign = self._foreign_rows(rows)
        if foreign:  # the store's features are not the model's: its rows are never fed to it
            use_card[foreign] = True
            s.fallback_reason[foreign] = [
                f"the order-entry store was built with feature registry {rows.store_registry[i] or 'unknown'}, "
                f"the model with {self.registry_version_}: rescore the book to rebuild the store" for i in foreign]
        gbm = ~use_card
        if gbm.any():
            try:
                started = time.perf_counter()
                # under a time budget (order entry) a compile of the trees is never waited for
                logit, impact = bundle.explain(X[gbm], num_threads=1 if gbm.sum() < 1000 else None,
                                               may_compile=budget_s is None)
                took = time.perf_counter() - started
                if budget_s is not None and took > budget_s * gbm.sum():
                    use_card |= gbm
                    s.fallback_reason[gbm] = (f"model took {1000 * took:.1f} ms, over its budget of "
                                              f"{1000 * budget_s * gbm.sum():.1f} ms")
                    if s.imposed is None:
                        s.imposed = np.full(n, None, dtype=object)
                    s.imposed[gbm] = s.fallback_reason[gbm]
                else:
                    s.logit[gbm], s.impact[gbm] = logit, impact
            except Exception as exc:  # the model failed: the scorecard answers instead
                use_card |= gbm
                # its kind only: a library's message (or its name) says nothing to the caller
                s.fallback_reason[gbm] = f"model error while scoring ({_kind(exc)})"
        if use_card.any() and bundle.scorecard is None:  # what needs the card is referred
            s.failed[use_card] = True
            s.kind[use_card] = None
            unavailable = f"scorecard error: the scorecard is unavailable ({bundle.scorecard_error or 'not loaded'})"
            s.fallback_reason[use_card] = [f"{r}; {unavailable}" if r else unavailable
                                           for r in s.fallback_reason[use_card]]
        elif use_card.any():
            s.kind[use_card] = "scorecard"
            try:
                card_rows = bundle.card_frame(X[use_card])  # categories back as their text
                pd_card = bundle.scorecard_pd(card_rows)
                s.logit[use_card] = np.log(pd_card / (1 - pd_card))
                points = bundle.scorecard.points_by_feature(card_rows)
                s.impact[use_card] = bundle.scorecard.best_points_ - points
            except Exception as exc:
                s.failed[use_card] = True
                s.kind[use_card] = None
                s.fallback_reason[use_card] = f"scorecard error while scoring ({_kind(exc)})"
        s.pd_ = 1.0 / (1.0 + np.exp(-s.logit))
        return s

    def decide(self, rows: pd.DataFrame, order_amount: np.ndarray, requested_terms: np.ndarray,
               request_ids: Sequence[str] | None = None, forced_fallback: str | None = None) -> list[dict[str, Any]]:
        """Score and decide every row of a frame of registry features and policy facts (batch)."""
        return self._decide(_Rows.from_frame(rows, self.registry, self._matrix), order_amount,
                            requested_terms, request_ids, forced_fallback, budget_s=None)

    def _columns(self, rows: _Rows, order_amount: np.ndarray, requested_terms: np.ndarray,
                 forced_fallback: str | None, budget_s: float | None, explain: bool = True,
                 texts: bool = True) -> dict[str, Any]:
        """Every decision as arrays: the one computation behind the online answer (a dict per
        order) and the batch table (a column per field; without the policy's per-order texts)."""
        n = len(rows.ids)
        s = self._score(rows, forced_fallback, budget_s)
        ok = ~s.failed
        scale = self.model.bundle.master_scale if self.model is not None else None
        band = np.full(n, "E", dtype=object)
        grade = np.full(n, None, dtype=object)
        points = np.full(n, np.nan)
        if scale is not None and ok.any():
            grade[ok], band[ok] = scale.grade_and_band(s.pd_[ok])
            points[ok] = self.model.bundle.points(s.logit[ok])
        refer = np.array([f"fallback in use: {r}" if r else None for r in s.fallback_reason], dtype=object)
        facts = rows.facts
        policy = apply_policy(PolicyInputs(
            band=band, revenue=facts["revenue"], operating_cash_flow=facts["operating_cash_flow"],
            statement_age_days=rows.X[:, self._statement_age] if self._statement_age is not None else np.full(n, np.nan),
            amount_12m=_zero_nan(facts["amount_12m"]), open_receivables=_zero_nan(facts["open_receivables"]),
            max_days_overdue_open=_zero_nan(facts["max_days_overdue_open"]),
            max_days_late_24m=facts["max_days_late_24m"],
            relationship_months=_zero_nan(rows.X[:, self._relationship]) if self._relationship is not None
            else np.zeros(n),
            limit_ceiling=facts["limit_ceiling"], booked_limit=facts["booked_limit"],
            book_limits_total=facts["book_limits_total"], approved_limit=facts["approved_limit"],
            approved_terms_days=facts["approved_terms_days"],
            order_amount=np.asarray(order_amount, dtype=float),
            requested_terms_days=np.asarray(requested_terms, dtype=float),
            refer_reason=refer), self.cfg.policy, self.cfg.seller, explain=explain, texts=texts)
        # unrounded; each form rounds as it presents (PD 6 decimals, score 1, money 2)
        return {"s": s, "points": points, "grade": grade, "band": band, "policy": policy}

    def book_limits(self, rows: pd.DataFrame, forced_fallback: str | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every customer's band, credit limit and exposure on current exposure, as the rescore
        decides them (the seller's total cap is worked out on these before the book is decided)."""
        r = _Rows.from_frame(rows, self.registry, self._matrix)
        n = len(r.ids)
        c = self._columns(r, np.zeros(n), np.full(n, np.nan), forced_fallback, budget_s=None, explain=False,
                          texts=False)
        return c["band"], np.asarray(c["policy"].credit_limit, dtype=float), np.asarray(c["policy"].exposure)

    def decide_frame(self, rows: pd.DataFrame, forced_fallback: str | None = None) -> pd.DataFrame:
        """A whole book's decisions on current exposure (no new order), one row per customer
        with the top reasons as columns: the batch form of ``decide``, column by column.
        ``forced_fallback``: why the scorecard must decide (monitoring's fallback mode)."""
        r = _Rows.from_frame(rows, self.registry, self._matrix)  # positional: the index does not matter
        n = len(r.ids)
        c = self._columns(r, np.zeros(n), np.full(n, np.nan), forced_fallback, budget_s=None, explain=False)
        s, policy = c["s"], c["policy"]
        failed = s.failed
        k = self.cfg.serving.top_reasons
        reasons = reason_columns(s.impact, r.X, self.registry, k, self._labels)
        for key in reasons:
            reasons[key][failed] = None
        decision = np.asarray(policy.decision, dtype=object).copy()
        decision[failed] = "refer"
        out = pd.DataFrame({
            "customer_id": np.asarray(r.ids, dtype=object),
            "pd_12m": np.where(failed, np.nan, np.round(s.pd_, 6)),
            "score": np.where(failed, np.nan, np.round(c["points"], 1)),
            "grade": c["grade"], "band": np.where(failed, None, c["band"]), "decision": decision,
            "credit_limit": np.asarray(policy.credit_limit, dtype=float),
            "limit_source": policy.limit_source,
            "recommended_limit": np.asarray(policy.recommended_limit, dtype=float),
            "recommended_terms_days": np.asarray(policy.terms_days).astype(int),
            "fallback": s.kind != "lightgbm", "fallback_reason": s.fallback_reason,
            "exposure": np.round(np.asarray(policy.exposure, dtype=float), 2),
            "decision_rule": np.where(failed, "referred_fallback", policy.rule),
            "decision_reason": [_unscored(s.fallback_reason[i]) if failed[i] else w
                                for i, w in enumerate(policy.explanation)],
            "conditions": [None if failed[i] or not c else "; ".join(c) for i, c in enumerate(policy.conditions)],
            "early_payment_discount": np.where(failed, None, np.asarray(policy.discount, dtype=object)),
            "model_version": self.model.version if self.model else None, "model_kind": s.kind,
        })
        for p in range(k):
            out[f"reason_{p + 1}"] = reasons[f"reason_{p + 1}"]
            out[f"reason_{p + 1}_feature"] = reasons[f"reason_{p + 1}_feature"]
        return out

    def _decide(self, rows: _Rows, order_amount: np.ndarray, requested_terms: np.ndarray,
                request_ids: Sequence[str] | None, forced_fallback: str | None,
                budget_s: float | None) -> list[dict[str, Any]]:
        return self._decisions(rows, order_amount, requested_terms, request_ids, forced_fallback, budget_s)[0]

    def _decisions(self, rows: _Rows, order_amount: np.ndarray, requested_terms: np.ndarray,
                   request_ids: Sequence[str] | None, forced_fallback: str | None,
                   budget_s: float | None) -> tuple[list[dict[str, Any]], _Scored]:
        """A dict per order, and the scores behind them (the audit log records what was imposed)."""
        n = len(rows.ids)
        c = self._columns(rows, order_amount, requested_terms, forced_fallback, budget_s)
        s, policy = c["s"], c["policy"]
        reasons = top_reasons(s.impact, rows.X, self.registry, self.cfg.serving.top_reasons, self._labels)
        model_name = self.model.name if self.model else None
        model_version = self.model.version if self.model else None
        store_as_of = rows.store_as_of
        out = []
        for i in range(n):
            failed = bool(s.failed[i])
            out.append({
                "customer_id": rows.ids[i],
                "pd_12m": None if failed else round(float(s.pd_[i]), 6),
                "score": None if failed else round(float(c["points"][i]), 1),
                "grade": c["grade"][i],
                "band": None if failed else c["band"][i],
                "decision": "refer" if failed else str(policy.decision[i]),
                "decision_reason": _unscored(s.fallback_reason[i]) if failed else policy.explanation[i],
                "conditions": [] if failed else policy.conditions[i],
                "early_payment_discount": None if failed else policy.discount[i],
                "credit_limit": float(policy.credit_limit[i]),
                "limit_source": "approved" if policy.approved[i] else "recommended",
                "recommended_limit": float(policy.recommended_limit[i]),
                "exposure_after_order": round(float(policy.exposure[i]), 2),
                "recommended_terms_days": int(policy.terms_days[i]),
                "reasons": [] if failed else reasons[i],
                "model": {"name": model_name, "version": model_version, "kind": s.kind[i]},
                "fallback": bool(s.kind[i] != "lightgbm"),
                "fallback_reason": s.fallback_reason[i],
                "store_as_of": store_as_of[i] if store_as_of is not None else None,
                "request_id": request_ids[i] if request_ids is not None else uuid.uuid4().hex,
                "case_id": None,
            })
        return out, s

    def score_orders(self, orders: Sequence[Order], forced_fallback: str | None = None, *,
                     each: bool = False, deadline: float | None = None, wait: bool = True,
                     referrals: list | None = None) -> list[dict[str, Any]]:
        """Decide sales orders (order entry): the same path as ``decide``, without a DataFrame,
        under the model's time budget and the fallback switch; on record before returned.

        A ``request_id`` already on record for the same order gets the recorded answer (a
        retry; nothing is written), for another order a ``RequestConflictError``. With
        ``each`` (a batch) an order that cannot be decided gets an error entry in its place
        (``error``, ``field``, ``status``, ``customer_id``, ``request_id``) and the others are
        decided; without, its error is raised.

        ``deadline`` (``time.monotonic()``) is when the caller stops waiting for the answer:
        past it nothing is decided or recorded (``AuditUnavailableError``), and the wait for
        the record ends at it or at ``serving.audit_budget_ms``, whichever comes first.
        Without ``wait`` (the event loop) the record does not wait for another writer's lock:
        ``AuditBusy`` (nothing recorded) says to decide again where waiting blocks no one.

        Once on record, each referral opens or joins its customer's case on the desk (and an
        approved limit whose review fell due opens a review case), its id in ``case_id``; with
        ``referrals`` (a list) they are appended to it instead, for ``open_cases`` to open
        where waiting for the desk's database blocks no one."""
        if not orders:
            return []
        if deadline is not None and self.audit is not None and time.monotonic() >= deadline:
            raise AuditUnavailableError("audit log: the decision could not be put on record in time; retry")
        bases: list[dict[str, Any]] = []
        failed: dict[int, dict[str, Any]] = {}
        for i, o in enumerate(orders):
            try:
                bases.append(self.lookup(o))
            except InputError as exc:
                if not each:
                    raise
                failed[i] = _error_entry(o, exc)
        todo = [o for i, o in enumerate(orders) if i not in failed] if failed else list(orders)
        decided = self._orders(todo, bases, forced_fallback, each, deadline, wait, referrals) if todo else []
        if not failed:
            return decided
        out, rest = [], iter(decided)
        for i in range(len(orders)):
            out.append(failed[i] if i in failed else next(rest))
        return out

    def _orders(self, orders: list[Order], bases: list[dict[str, Any]], forced_fallback: str | None,
                each: bool, deadline: float | None = None, wait: bool = True,
                referrals: list | None = None) -> list[dict[str, Any]]:
        rows = self.order_rows(bases)
        amounts = np.array([o.order_amount for o in orders], dtype=float)
        terms = np.array([np.nan if o.requested_terms_days is None else o.requested_terms_days for o in orders], dtype=float)
        ids = [o.request_id or uuid.uuid4().hex for o in orders]
        budget = self.cfg.serving.model_budget_ms / 1000.0
        if forced_fallback is None and self.switch is not None:
            forced_fallback = self.switch.active_reason()
        decisions, s = self._decisions(rows, amounts, terms, ids, forced_fallback, budget_s=budget)
        if self.audit is None:
            self._to_desk(orders, bases, decisions, referrals)
            return decisions
        spent = time.monotonic() + self.cfg.serving.audit_budget_ms / 1000.0
        try:
            recorded = self.audit.record(orders, decisions, self._evidence(rows, bases, s, forced_fallback),
                                         deadline=spent if deadline is None else min(deadline, spent), wait=wait)
        except AuditUnavailableError:  # said already: late, or another writer holds the log
            raise
        except Exception as exc:
            raise AuditUnavailableError(f"audit log: the decision could not be recorded "
                                        f"({type(exc).__name__}); retry the order") from None
        for k, got in enumerate(recorded):
            if got is None:
                continue
            if isinstance(got, RequestConflictError):
                if not each:
                    raise got
                got = _error_entry(orders[k], got)
            decisions[k] = got  # a retry: the answer on record, as it was sent
        self._to_desk(orders, bases, decisions, referrals)
        return decisions

    def _to_desk(self, orders: Sequence[Order], bases: Sequence[Mapping[str, Any]], decisions: list[dict[str, Any]],
                 referrals: list | None) -> None:
        """The cases these decisions open: one per referral, one per limit whose review fell due."""
        if self.desk is None:
            return
        pending = []
        for i, (o, b, d) in enumerate(zip(orders, bases, decisions)):
            if "error" in d:
                continue
            if d["decision"] == "refer":
                pending.append((i, referral(d, o.order_amount, o.requested_terms_days, d["request_id"])))
            elif b.get("review_due") is not None:
                pending.append((i, review_referral(b["review_due"], d)))
        if referrals is not None:
            referrals.extend(pending)
        else:
            self.open_cases(pending, decisions)

    def open_cases(self, pending: Sequence[tuple[int, Any]], decisions: list[dict[str, Any]]) -> None:
        """Open the cases ``score_orders`` left in ``referrals``, their ids into ``decisions``."""
        if self.desk is not None:
            open_cases(self.desk, pending, decisions)

    def _evidence(self, rows: _Rows, bases: list[dict[str, Any]], s: _Scored,
                  forced_fallback: str | None) -> Evidence:
        """What the audit row of each decision records beside the answer."""
        # the values the rows were built from, by name (one C call a row: a copy out of the
        # arrays cost ten times as much)
        get = self._record_values
        values = [get(b) for b in bases]
        n = len(values)
        if self.model is None:
            env: list[dict[str, str] | None] = [{"model_error": self.model_error or "not loaded"}] * n
        elif s.imposed is None:
            env = [None] * n
        else:
            env = [None if r is None else {"forced_fallback" if r == forced_fallback else "over_budget": r}
                   for r in s.imposed]
        versions = rows.store_registry or [_NOT_FROM_STORE] * n
        return Evidence(
            names=self._record_names, values=values,
            overridden=[b.get("overridden") or {} for b in bases], in_book=[bool(b.get("in_book")) for b in bases],
            store_as_of=rows.store_as_of or [None] * n,
            store_registry_version=[None if v is _NOT_FROM_STORE else v for v in versions],
            environment=env, config_fingerprint=self.config_fingerprint, config_json=self.config_json)

    def decide_recorded(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Decide again what an audit row recorded (``riskcast replay``): the recorded features
        and facts, order, store row and imposed fallback, through the order-entry path, with
        no store, no switch, no time to measure and nothing written."""
        inputs = json.loads(record["inputs"])
        base: dict[str, Any] = self._blank.copy()
        base.update({k: (math.nan if v is None else v) for k, v in inputs.items()})
        in_book = bool(record["in_book"])
        base.update(customer_id=record["customer_id"], in_book=in_book, as_of=record["store_as_of"],
                    registry_version=record["store_registry_version"])
        env = json.loads(record["environment"]) if record["environment"] else {}
        rows = _Rows.from_dicts([base], self._names)
        terms = record["requested_terms_days"]
        decisions, _ = self._decisions(
            rows, np.array([record["order_amount"]], dtype=float),
            np.array([np.nan if terms is None else terms], dtype=float), [record["request_id"]],
            env.get("forced_fallback") or env.get("over_budget"), budget_s=math.inf)
        return decisions[0]

    def customer_view(self, customer_id: str) -> dict[str, Any]:
        """The customer as the system sees it now, without an order: PD, grade, band, the limit
        that decides (the desk's approved one, or the recommendation) and why; nothing recorded."""
        base = self.lookup(Order(customer_id, 1.0))  # a nominal order: lookup's checks, no amount decided
        out = self._decide(self.order_rows([base]), np.zeros(1), np.full(1, np.nan), ["view"], None, budget_s=None)[0]
        out["review_due"] = base.get("review_due")
        out["open_receivables"] = float(base.get("open_receivables") or 0.0)
        out["max_days_overdue_open"] = float(base.get("max_days_overdue_open") or 0.0)
        out["in_book"] = bool(base.get("in_book"))
        return out

    def score_order(self, order: Order, forced_fallback: str | None = None) -> dict[str, Any]:
        return self.score_orders([order], forced_fallback)[0]


def _error_entry(order: Order, exc: InputError) -> dict[str, Any]:
    """A batch's answer for an order that could not be decided: the others are."""
    return {"customer_id": order.customer_id, "request_id": order.request_id, "error": str(exc),
            "field": exc.field, "status": exc.http_status}
