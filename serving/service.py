"""The BentoML service: translates HTTP to the scoring core and back, nothing more.

Start it with ``riskcast serve``; it reads the work directory from ``RISKCAST_HOME``, an
optional configuration file from ``RISKCAST_CONFIG`` and, when set, the API key every scoring
and admin call must carry in ``X-API-Key`` from ``RISKCAST_API_KEY`` (see ``gate``).
"""

from __future__ import annotations

import gc
import logging
import os
from http import HTTPStatus
from typing import Any, Union

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, ConfigDict, Field

from riskcast.errors import RiskcastError

from .gate import MAX_BODY, RequestGate
from .schemas import OrderError, ScoreRequest, ScoreResponse


def _to_http(exc: RiskcastError) -> BentoMLException:
    return BentoMLException(str(exc), error_code=HTTPStatus(exc.http_status))


class _OneLine(logging.Filter):
    """Errors are logged as one line: no tracebacks (they can carry request values)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


# Two worker processes: one per core of the machines this runs on (the GIL serialises one).
# No tracing spans for scoring calls: with no exporter they only cost (~0.4 ms of ~1.6 ms per
# order, measured through the ASGI app); each decision is in the audit log instead. No access
# log by default: a line per request cost 0.25-0.5 ms of an order's answer at 100-500 orders/s
# (side by side, three rounds each); /metrics counts every request by path and status, and
# BENTOML_CONFIG_OPTIONS='services.riskcast.logging.access.enabled=true' turns the log back on.
@bentoml.service(name="riskcast", workers=2, http={"max_request_size": MAX_BODY}, traffic={"timeout": 10},
                 tracing={"excluded_urls": "score,score_batch"}, logging={"access": {"enabled": False}})
class RiskcastService:
    """POST /score for one order, POST /score_batch for many, POST /admin/reload after the
    champion alias moved; /livez, /readyz, /metrics built in."""

    def __init__(self) -> None:
        from .runtime import build_core

        for name in ("bentoml._internal.server.http_app", "bentoml.access", "uvicorn.error"):
            logging.getLogger(name).addFilter(_OneLine())
        self.core = build_core(os.environ.get("RISKCAST_HOME"), os.environ.get("RISKCAST_CONFIG"), audit=True)
        # what start-up loaded lives as long as the worker: out of the collector's sight, a full
        # collection no longer walks ~460k objects (230 ms, paid by whichever order triggered it)
        gc.collect()
        gc.freeze()
        # after the freeze, so that the compiler's passing objects are not kept with start-up's;
        # orders take the compiled trees once ready (~30 us less each)
        self.core.compile_in_background()

    @staticmethod
    def _order(fields: dict):
        """An already validated request as the core's ``Order``."""
        from .core import Order

        feats = fields.get("features")
        return Order(fields["customer_id"], fields["order_amount"], fields.get("requested_terms_days"),
                     feats.model_dump(exclude_none=True) if feats is not None else None, fields.get("request_id"))

    def decide(self, request: Any) -> dict:
        """One order's decision as the response object; ``request`` a validated ``ScoreRequest``
        or its fields. Raises ``RiskcastError`` for what the caller must be told."""
        return self.core.score_order(self._order(request if isinstance(request, dict) else dict(request)))

    @bentoml.api(input_spec=ScoreRequest)
    async def score(self, **fields) -> ScoreResponse:
        """Over HTTP the gate answers this path with ``answer_order`` (the same decision); this
        is the method's form for in-process callers and the published document."""
        # a decision costs ~0.3 ms of CPU: made on the event loop it answers sooner than
        # through a worker thread, whose hand-off alone cost ~1 ms (a batch keeps the thread)
        try:
            return ScoreResponse(**self.decide(fields))
        except RiskcastError as exc:
            raise _to_http(exc) from None

    @bentoml.api
    def score_batch(self, requests: list[ScoreRequest]) -> list[Union[ScoreResponse, OrderError]]:  # type: ignore[valid-type]
        """Each order is decided on its own: one that cannot be (a customer not in the book, a
        refused override, a request_id on record for another order) is an ``OrderError`` in its
        place. A body that is not a valid batch is refused whole (400, by the gate)."""
        if len(requests) > 10_000:
            raise BentoMLException("requests: at most 10000 orders per batch", error_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        try:
            answers = self.core.score_orders([self._order(dict(r)) for r in requests], each=True)
        except RiskcastError as exc:
            raise _to_http(exc) from None
        return [OrderError(**d) if "error" in d else ScoreResponse(**d) for d in answers]

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
        # the replaced model was frozen with start-up: let the collector see it once to free it
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.core.compile_in_background()
        return {"model": model.name, "version": model.version, "previous_version": previous}


def answer_order(request: Any) -> bytes:
    """``POST /score`` as the gate answers it: this worker's service instance decides and the
    response model checks the answer before it is sent, as BentoML's handler would."""
    return ScoreResponse.model_validate(bentoml.get_current_service().decide(request)).model_dump_json().encode()


def ready_status() -> dict:
    """The body of a ready /readyz: the model this worker decides with and how old its
    order-entry store is, and whether the store was built with the model's feature registry."""
    core = bentoml.get_current_service().core
    model = {"name": core.model.name, "version": core.model.version} if core.model else None
    return {"model": model, "store": core.store_status()}


def _paths():
    from riskcast.config import WorkPaths, workdir

    return WorkPaths(root=workdir(os.environ.get("RISKCAST_HOME")))


class _Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests: list[ScoreRequest] = Field(max_length=10_000)  # type: ignore[valid-type]


RiskcastService.add_asgi_middleware(RequestGate, validators={"/score": ScoreRequest, "/score_batch": _Batch},
                                    direct={"/score": answer_order}, ready=ready_status)
