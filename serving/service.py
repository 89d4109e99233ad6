"""The BentoML service: translates HTTP to the scoring core and back, nothing more.

Start it with ``riskcast serve``; it reads the work directory from ``RISKCAST_HOME`` and an
optional configuration file from ``RISKCAST_CONFIG``.
"""

from __future__ import annotations

import os
from http import HTTPStatus

import bentoml
from bentoml.exceptions import BentoMLException

from riskcast.errors import RiskcastError

from .schemas import ScoreRequest, ScoreResponse


def _to_http(exc: RiskcastError) -> BentoMLException:
    return BentoMLException(str(exc), error_code=HTTPStatus(exc.http_status))


@bentoml.service(name="riskcast", http={"max_request_size": 1_048_576}, traffic={"timeout": 10})
class RiskcastService:
    """POST /score for one order, POST /score_batch for many; /livez, /readyz, /metrics built in."""

    def __init__(self) -> None:
        from .runtime import build_core

        self.core = build_core(os.environ.get("RISKCAST_HOME"), os.environ.get("RISKCAST_CONFIG"))

    @staticmethod
    def _order(fields: dict):
        """An already validated request as the core's ``Order``."""
        from .core import Order

        feats = fields.get("features")
        return Order(fields["customer_id"], fields["order_amount"], fields.get("requested_terms_days"),
                     feats.model_dump(exclude_none=True) if feats is not None else None, fields.get("request_id"))

    @bentoml.api(input_spec=ScoreRequest)
    def score(self, **fields) -> ScoreResponse:
        try:
            return ScoreResponse(**self.core.score_order(self._order(fields)))
        except RiskcastError as exc:
            raise _to_http(exc) from None

    @bentoml.api
    def score_batch(self, requests: list[ScoreRequest]) -> list[ScoreResponse]:  # type: ignore[valid-type]
        if len(requests) > 10_000:
            raise BentoMLException("requests: at most 10000 orders per batch", error_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        try:
            return [ScoreResponse(**d) for d in self.core.score_orders([self._order(dict(r)) for r in requests])]
        except RiskcastError as exc:
            raise _to_http(exc) from None
