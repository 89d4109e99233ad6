"""HTTP request and response models, generated from the feature registry.

The service's OpenAPI document lists every feature a caller may supply, with its type and
valid range, because the model below is built from the same registry the model trained on.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model

from riskcast.features.registry import POLICY_FACTS, FeatureRegistry, default_registry

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)



def _bounds(lo: float, hi: float) -> dict[str, float]:
    return {k: v for k, v in (("ge", lo), ("le", hi)) if math.isfinite(v)}


def features_model(registry: FeatureRegistry) -> type[BaseModel]:
    """Optional feature values (and policy facts) a request may supply or override."""
    fields = {}
    for f in registry.features:
        fields[f.name] = (Optional[float], Field(None, description=f"{f.description} ({f.group})",
                                                 **_bounds(f.valid_min, f.valid_max)))
    for p in POLICY_FACTS:
        fields[p.name] = (Optional[float], Field(None, description=p.description, **_bounds(p.valid_min, p.valid_max)))
    return create_model("Features", __config__=_STRICT, **fields)


def request_model(registry: FeatureRegistry) -> type[BaseModel]:
    feats = features_model(registry)
    return create_model(
        "ScoreRequest",
        __config__=_STRICT,
        customer_id=(Annotated[str, Field(min_length=1, max_length=64, description="The customer's id in the book")], ...),
        order_amount=(Annotated[float, Field(gt=0, le=1e12, strict=True, description="Amount of this sales order")], ...),
        requested_terms_days=(Optional[Annotated[int, Field(ge=0, le=365, strict=True)]],
                              Field(None, description="Payment terms the customer asks for, in days")),
        features=(Optional[feats], Field(None, description="Feature values that override or supply the book's")),
        request_id=(Optional[Annotated[str, Field(min_length=1, max_length=64)]], Field(None, description="Caller's id for the audit trail")),
    )


class Reason(BaseModel):
    feature: str
    text: str
    impact: float = Field(description="Log-odds contribution (LightGBM) or points lost against the best bin (scorecard)")
    value: Optional[float] = None


class ModelRef(BaseModel):
    name: Optional[str]
    version: Optional[str]
    kind: Optional[Literal["lightgbm", "scorecard"]]


class ScoreResponse(BaseModel):
    customer_id: str
    pd_12m: Optional[float] = Field(None, ge=0, le=1)
    score: Optional[float] = None
    grade: Optional[str] = None
    band: Optional[str] = None
    decision: Literal["approve", "approve_with_conditions", "refer", "decline"]
    decision_reason: str
    conditions: list[str]
    credit_limit: float
    exposure_after_order: float
    recommended_terms_days: int
    reasons: list[Reason]
    model: ModelRef
    fallback: bool
    fallback_reason: Optional[str] = None
    request_id: str


ScoreRequest = request_model(default_registry())
