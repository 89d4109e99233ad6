"""HTTP request and response models, generated from the feature registry.

The service's OpenAPI document lists every feature a caller may supply, with its type and
valid range, because the model below is built from the same registry the model trained on.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model

from riskcast.features.registry import REQUEST_FACTS, FeatureRegistry, default_registry

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)



def _bounds(lo: float, hi: float) -> dict[str, float]:
    return {k: v for k, v in (("ge", lo), ("le", hi)) if math.isfinite(v)}


#: a JSON number and nothing else: lax validation would take ``true`` as 1.0 and ``"12.5"`` as
#: 12.5, which the published document (``type: number``) refuses
_NUMBER = Optional[Annotated[float, Field(strict=True)]]


def features_model(registry: FeatureRegistry) -> type[BaseModel]:
    """Optional feature values (and policy facts) a request may supply or override."""
    fields = {}
    for f in registry.features:
        fields[f.name] = (_NUMBER, Field(None, description=f"{f.description} ({f.group})",
                                         **_bounds(f.valid_min, f.valid_max)))
    for p in REQUEST_FACTS:
        fields[p.name] = (_NUMBER, Field(None, description=p.description, **_bounds(p.valid_min, p.valid_max)))
    return create_model("Features", __config__=_STRICT, **fields)


def request_model(registry: FeatureRegistry) -> type[BaseModel]:
    feats = features_model(registry)
    return create_model(
        "ScoreRequest",
        __config__=_STRICT,
        customer_id=(Annotated[str, Field(min_length=1, max_length=64, description="The customer's id in the book")], ...),
        order_amount=(Annotated[float, Field(gt=0, le=1e12, strict=True, description="Amount of this sales order, > 0",
                                             json_schema_extra={"minimum": 0, "exclusiveMinimum": True})], ...),
        requested_terms_days=(Optional[Annotated[int, Field(ge=0, le=365, strict=True)]],
                              Field(None, description="Payment terms the customer asks for, in days")),
        features=(Optional[feats], Field(None, description="Feature values that override or supply the book's")),
        request_id=(Optional[Annotated[str, Field(min_length=1, max_length=64)]], Field(None, description="Caller's id for the audit trail")),
    )


def _maybe(description: str, **limits: Any) -> Any:
    """An optional response field; the service's OpenAPI is 3.0, which spells null as ``nullable``."""
    return Field(None, description=description, json_schema_extra={"nullable": True}, **limits)


class Reason(BaseModel):
    feature: str = Field(description="Registry name of the feature, or of the source whose missing features "
                               "this reason sums (financial_statements, payment_history, industry, relationship)")
    text: str = Field(description="The sentence for the sales rep, with the customer's value")
    impact: float = Field(description="Log-odds contribution (LightGBM) or points lost against the best bin (scorecard)")
    value: Optional[float] = _maybe("The customer's value of the feature; null for a source's missing features")


class ModelRef(BaseModel):
    name: Optional[str] = _maybe("Registered model name; null when no model could be loaded")
    version: Optional[str] = _maybe("Registered model version")
    kind: Optional[Literal["lightgbm", "scorecard"]] = _maybe(
        "Which part of the bundle decided: the model or its fallback scorecard; null when neither could")


class ScoreResponse(BaseModel):
    customer_id: str = Field(description="The customer the order is for")
    pd_12m: Optional[float] = _maybe("Probability of default within 12 months", ge=0, le=1)
    score: Optional[float] = _maybe("Points: 600 at 50:1 odds, 20 points to double the odds (configurable)")
    grade: Optional[str] = _maybe("Master-scale grade, 1 (best) to 10")
    band: Optional[Literal["A", "B", "C", "D", "E"]] = _maybe("A-E band of the grade")
    decision: Literal["approve", "approve_with_conditions", "refer", "decline"] = Field(
        description="approve; approve_with_conditions (see conditions); refer to a credit analyst; decline")
    decision_reason: str = Field(description="Why this decision, in one sentence")
    conditions: list[str] = Field(description="Conditions of an approve_with_conditions: deposit, prepayment, terms")
    early_payment_discount: Optional[str] = _maybe(
        "Early-payment discount offered (e.g. '2/10 net 60': 2% off when paid within 10 days); null when none")
    credit_limit: float = Field(ge=0, description="Credit limit for the customer")
    limit_source: Literal["approved", "recommended"] = Field(
        "recommended", description="Which limit decided: the one approved on the credit desk (while its review date "
                                   "stands) or the policy's recommendation")
    recommended_limit: Optional[float] = _maybe("The policy's own limit for the customer, whichever decided", ge=0)
    exposure_after_order: float = Field(description="Open receivables plus this order")
    recommended_terms_days: int = Field(ge=0, le=365, description="Payment terms to offer, in days (0: prepayment)")
    reasons: list[Reason] = Field(description="The factors that raise this customer's risk most, most important first")
    model: ModelRef = Field(description="The model that decided")
    fallback: bool = Field(description="True when the scorecard (or nothing) decided instead of the model")
    fallback_reason: Optional[str] = _maybe("Why the model did not decide")
    store_as_of: Optional[str] = _maybe(
        "As-of date (YYYY-MM-DD) of the order-entry store row the decision used: how old the customer's "
        "features are; null for a customer not in the book (decided on the request's own features)")
    request_id: str = Field(description="The caller's request id, or one made up; the key of the audit record")
    case_id: Optional[int] = _maybe("The credit case a referral opened or joined (GET /cases/{case_id} tells its "
                                    "state and the order's final decision); null when the order was not referred")


class OrderError(BaseModel):
    """A batch's entry for an order that could not be decided; the batch's other orders are."""

    customer_id: str = Field(description="The customer the order is for")
    request_id: Optional[str] = _maybe("The order's request id, when it had one")
    error: str = Field(description="What is wrong, naming the field: `<field>: <problem>`")
    field: Optional[str] = _maybe("The field at fault (customer_id, features.<name>, request_id, ...)")
    status: int = Field(ge=400, le=599, description="The HTTP status the order alone would have got: 404 customer "
                                                    "not in the book, 409 request_id on record for another order, "
                                                    "422 a book value the request may not replace, 400 a bad value")


ScoreRequest = request_model(default_registry())


class ReloadRequest(BaseModel):
    """The body of ``POST /admin/reload``: none, or an empty object. What to load is the
    champion alias's to say, so the request names nothing."""

    model_config = ConfigDict(extra="forbid")


class ReloadResponse(BaseModel):
    """What ``POST /admin/reload`` loaded; every worker decides with it from its next call."""

    model: str = Field(description="Registered model name")
    version: str = Field(description="The version every worker of the service now decides with")
    previous_version: Optional[str] = _maybe("The version this worker decided with before; null when it had none")
