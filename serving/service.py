"""The BentoML service: translates HTTP to the scoring core and back, nothing more.

Start it with ``riskcast serve``; it reads the work directory from ``RISKCAST_HOME``, an
optional configuration file from ``RISKCAST_CONFIG`` and, when set, the API key every scoring
and admin call must carry in ``X-API-Key`` from ``RISKCAST_API_KEY``.
"""

from __future__ import annotations

import hmac
import json
import os
from http import HTTPStatus
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException

from riskcast.errors import RiskcastError

from .schemas import ScoreRequest, ScoreResponse

_GUARDED = ("/score", "/score_batch", "/admin/")


def _to_http(exc: RiskcastError) -> BentoMLException:
    return BentoMLException(str(exc), error_code=HTTPStatus(exc.http_status))


class ApiKeyGuard:
    """ASGI middleware: with ``RISKCAST_API_KEY`` set, scoring and admin calls need the key in
    ``X-API-Key`` (compared in constant time); health, metrics and the docs stay open."""

    def __init__(self, app: Any) -> None:
        self.app = app
        key = os.environ.get("RISKCAST_API_KEY", "")
        self.key = key.encode() if key else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self.key is None or scope.get("type") != "http" or not scope.get("path", "").startswith(_GUARDED):
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-api-key", b"")
        if hmac.compare_digest(given, self.key):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "X-API-Key: missing or wrong API key"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


@bentoml.service(name="riskcast", http={"max_request_size": 1_048_576}, traffic={"timeout": 10})
class RiskcastService:
    """POST /score for one order, POST /score_batch for many, POST /admin/reload after the
    champion alias moved; /livez, /readyz, /metrics built in."""

    def __init__(self) -> None:
        from .runtime import build_core

        self.core = build_core(os.environ.get("RISKCAST_HOME"), os.environ.get("RISKCAST_CONFIG"), audit=True)

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

    @bentoml.api(route="/admin/reload")
    def reload(self) -> dict:
        """Load the bundle the alias points to now and swap it in; requests keep being answered."""
        from .runtime import load_champion

        core = self.core
        previous = core.model.version if core.model else None
        model, error = load_champion(core.cfg, _paths())
        if model is None:
            raise BentoMLException(f"reload: {error}; still serving version {previous}",
                                   error_code=HTTPStatus.SERVICE_UNAVAILABLE)
        self.core = core.with_model(model, error)
        return {"model": model.name, "version": model.version, "previous_version": previous}


def _paths():
    from riskcast.config import WorkPaths, workdir

    return WorkPaths(root=workdir(os.environ.get("RISKCAST_HOME")))


RiskcastService.add_asgi_middleware(ApiKeyGuard)
