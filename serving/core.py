"""The scoring core: customer and order in, PD, grade, limit, terms, decision and reasons out.

The service and batch rescoring both call ``ScoringCore.decide`` on a frame of feature rows,
so an order scored over HTTP and the same customer in the nightly rescore get the same answer.
The core always answers: when the model cannot, the bundle's scorecard does, and when neither
can, the decision is ``refer`` with the reason.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from riskcast.config import RiskcastConfig
from riskcast.errors import AuditUnavailableError, InputError, UnknownCustomerError
from riskcast.features.registry import POLICY_FACTS, FeatureRegistry, default_registry
from riskcast.features.store import FeatureStore
from riskcast.training.tracking import LoadedModel

from .audit import AuditLog
from .policy import PolicyInputs, apply_policy
from .reasons import reason_columns, top_reasons
from .switch import FallbackSwitch

#: what a customer without history or statements is assumed to have
CONTEXT_DEFAULTS: dict[str, float] = {f.name: f.default for f in POLICY_FACTS}


@dataclass(frozen=True)
class Order:
    customer_id: str
    order_amount: float
    requested_terms_days: int | None = None
    features: Mapping[str, float] | None = None
    request_id: str | None = None


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

    @classmethod
    def from_frame(cls, df: pd.DataFrame, registry: FeatureRegistry) -> "_Rows":
        facts = {c: (df[c].to_numpy(dtype=np.float64, na_value=np.nan) if c in df.columns
                     else np.full(len(df), default)) for c, default in CONTEXT_DEFAULTS.items()}
        return cls([str(c) for c in df["customer_id"]],
                   df[registry.names].to_numpy(dtype=np.float64, na_value=np.nan), facts)

    @classmethod
    def from_dicts(cls, rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> "_Rows":
        X = np.array([[r[n] for n in names] for r in rows], dtype=np.float64).reshape(len(rows), len(names))
        facts = {c: np.array([r[c] for r in rows], dtype=np.float64) for c in CONTEXT_DEFAULTS}
        return cls([str(r["customer_id"]) for r in rows], X, facts)


@dataclass
class _Scored:
    pd_: np.ndarray
    logit: np.ndarray
    impact: np.ndarray
    kind: np.ndarray
    fallback_reason: np.ndarray
    failed: np.ndarray


class ScoringCore:
    """Holds the loaded bundle, the feature store and the configuration; stateless per call."""

    def __init__(self, cfg: RiskcastConfig, model: LoadedModel | None, store: FeatureStore | None,
                 model_error: str | None = None, registry: FeatureRegistry | None = None,
                 switch: FallbackSwitch | None = None, audit: AuditLog | None = None) -> None:
        self.cfg = cfg
        self.model = model
        self.store = store
        #: monitoring's order to decide with the scorecard, read on every call
        self.switch = switch
        #: where order-entry decisions are recorded before they are returned
        self.audit = audit
        self.model_error = model_error
        self.registry = model.bundle.registry if model is not None else (registry or default_registry())
        #: what a request may supply: model features and policy facts, with their valid ranges
        if model is not None and model.bundle.booster is not None:
            try:  # build the leaf tables now, not inside the first order's time budget
                model.bundle.attribution
            except Exception:  # noqa: BLE001 - the same error falls back to the scorecard per order
                pass
        self._names = self.registry.names
        self._blank = dict.fromkeys(self._names, math.nan) | CONTEXT_DEFAULTS
        self._relationship = self._names.index("relationship_months") if "relationship_months" in self.registry else None
        self.input_ranges_ = {**self.registry.valid_ranges, **{f.name: (f.valid_min, f.valid_max) for f in POLICY_FACTS}}

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
        return ScoringCore(self.cfg, model, self.store, model_error, switch=self.switch, audit=self.audit)

    @property
    def max_missing_share(self) -> float:
        """The configured limit, else the one the bundle learned from its training data."""
        if self.cfg.serving.max_missing_share is not None:
            return self.cfg.serving.max_missing_share
        return float(self.model.bundle.metadata.get("max_missing_share", 0.5)) if self.model else 0.5

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

    def lookup(self, order: Order) -> dict[str, Any]:
        """The customer's latest features, with the request's values laid over them."""
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
        base: dict[str, Any] = self._blank.copy()
        base.update(row or {})
        base.update({k: (math.nan if v is None else float(v)) for k, v in overrides.items()})
        base["customer_id"] = order.customer_id
        base["in_book"] = row is not None
        return base

    # -- scoring ------------------------------------------------------------------------
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
        missing = np.isnan(X).sum(axis=1) / max(X.shape[1], 1)
        limit = self.max_missing_share
        use_card = missing > limit
        s.fallback_reason[use_card] = [f"{m:.0%} of features missing (limit {limit:.0%})" for m in missing[use_card]]
        if bundle.booster is None:
            use_card[:] = True
            s.fallback_reason[:] = bundle.booster_error or "model file unreadable"
        elif forced_reason:
            use_card[:] = True
            s.fallback_reason[:] = forced_reason
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
                else:
                    s.logit[gbm], s.impact[gbm] = logit, impact
            except Exception as exc:  # the model failed: the scorecard answers instead
                use_card |= gbm
                s.fallback_reason[gbm] = f"model error: {type(exc).__name__}: {exc}"[:200]
        if use_card.any():
            s.kind[use_card] = "scorecard"
            try:
                card_rows = pd.DataFrame(X[use_card], columns=self.registry.names)
                pd_card = bundle.scorecard_pd(card_rows)
                s.logit[use_card] = np.log(pd_card / (1 - pd_card))
                points = bundle.scorecard.points_by_feature(card_rows)
                s.impact[use_card] = bundle.scorecard.best_points_ - points
            except Exception as exc:
                s.failed[use_card] = True
                s.kind[use_card] = None
                s.fallback_reason[use_card] = f"scorecard error: {type(exc).__name__}: {exc}"[:200]
        s.pd_ = 1.0 / (1.0 + np.exp(-s.logit))
        return s

    def decide(self, rows: pd.DataFrame, order_amount: np.ndarray, requested_terms: np.ndarray,
               request_ids: Sequence[str] | None = None, forced_fallback: str | None = None) -> list[dict[str, Any]]:
        """Score and decide every row of a frame of registry features and policy facts (batch)."""
        return self._decide(_Rows.from_frame(rows, self.registry), order_amount,
                            requested_terms, request_ids, forced_fallback, budget_s=None)

    def _columns(self, rows: _Rows, order_amount: np.ndarray, requested_terms: np.ndarray,
                 forced_fallback: str | None, budget_s: float | None, explain: bool = True) -> dict[str, Any]:
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
            amount_12m=_zero_nan(facts["amount_12m"]), open_receivables=_zero_nan(facts["open_receivables"]),
            max_days_overdue_open=_zero_nan(facts["max_days_overdue_open"]),
            relationship_months=_zero_nan(rows.X[:, self._relationship]) if self._relationship is not None
            else np.zeros(n),
            order_amount=np.asarray(order_amount, dtype=float),
            requested_terms_days=np.asarray(requested_terms, dtype=float),
            refer_reason=refer), self.cfg.policy, explain=explain)
        # unrounded; each form rounds as it presents (PD 6 decimals, score 1, money 2)
        return {"s": s, "points": points, "grade": grade, "band": band, "policy": policy}

    def decide_frame(self, rows: pd.DataFrame, forced_fallback: str | None = None) -> pd.DataFrame:
        """A whole book's decisions on current exposure (no new order), one row per customer
        with the top reasons as columns: the batch form of ``decide``, column by column.
        ``forced_fallback``: why the scorecard must decide (monitoring's fallback mode)."""
        r = _Rows.from_frame(rows, self.registry)  # positional: the index does not matter
        n = len(r.ids)
        c = self._columns(r, np.zeros(n), np.full(n, np.nan), forced_fallback, budget_s=None, explain=False)
        s, policy = c["s"], c["policy"]
        failed = s.failed
        k = self.cfg.serving.top_reasons
        reasons = reason_columns(s.impact, r.X, self.registry, k)
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
            "recommended_terms_days": np.asarray(policy.terms_days).astype(int),
            "fallback": s.kind != "lightgbm", "fallback_reason": s.fallback_reason,
            "exposure": np.round(np.asarray(policy.exposure, dtype=float), 2),
            "model_version": self.model.version if self.model else None, "model_kind": s.kind,
        })
        for p in range(k):
            out[f"reason_{p + 1}"] = reasons[f"reason_{p + 1}"]
            out[f"reason_{p + 1}_feature"] = reasons[f"reason_{p + 1}_feature"]
        return out

    def _decide(self, rows: _Rows, order_amount: np.ndarray, requested_terms: np.ndarray,
                request_ids: Sequence[str] | None, forced_fallback: str | None,
                budget_s: float | None) -> list[dict[str, Any]]:
        n = len(rows.ids)
        c = self._columns(rows, order_amount, requested_terms, forced_fallback, budget_s)
        s, policy = c["s"], c["policy"]
        reasons = top_reasons(s.impact, rows.X, self.registry, self.cfg.serving.top_reasons)
        model_name = self.model.name if self.model else None
        model_version = self.model.version if self.model else None
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
                "decision_reason": policy.explanation[i],
                "conditions": policy.conditions[i],
                "credit_limit": float(policy.credit_limit[i]),
                "exposure_after_order": round(float(policy.exposure[i]), 2),
                "recommended_terms_days": int(policy.terms_days[i]),
                "reasons": [] if failed else reasons[i],
                "model": {"name": model_name, "version": model_version, "kind": s.kind[i]},
                "fallback": bool(s.kind[i] != "lightgbm"),
                "fallback_reason": s.fallback_reason[i],
                "request_id": request_ids[i] if request_ids is not None else uuid.uuid4().hex,
            })
        return out

    def score_orders(self, orders: Sequence[Order], forced_fallback: str | None = None) -> list[dict[str, Any]]:
        """Decide sales orders (order entry): the same path as ``decide``, without a DataFrame,
        under the model's time budget and the fallback switch; on record before returned."""
        if not orders:
            return []
        rows = _Rows.from_dicts([self.lookup(o) for o in orders], self._names)
        amounts = np.array([o.order_amount for o in orders], dtype=float)
        terms = np.array([np.nan if o.requested_terms_days is None else o.requested_terms_days for o in orders], dtype=float)
        ids = [o.request_id or uuid.uuid4().hex for o in orders]
        budget = self.cfg.serving.model_budget_ms / 1000.0
        if forced_fallback is None and self.switch is not None:
            forced_fallback = self.switch.active_reason()
        decisions = self._decide(rows, amounts, terms, ids, forced_fallback, budget_s=budget)
        if self.audit is not None:
            try:
                self.audit.record(orders, decisions)
            except Exception as exc:
                raise AuditUnavailableError(f"audit log: the decision could not be recorded "
                                            f"({type(exc).__name__}); retry the order") from None
        return decisions

    def score_order(self, order: Order, forced_fallback: str | None = None) -> dict[str, Any]:
        return self.score_orders([order], forced_fallback)[0]
