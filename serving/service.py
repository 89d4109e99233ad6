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
from typing import TYPE_CHECKING, Any, Union

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, ConfigDict, Field

from riskcast.errors import RiskcastError

from .gate import MAX_BODY, RequestGate
from .schemas import OrderError, ReloadRequest, ReloadResponse, ScoreRequest, ScoreResponse

if TYPE_CHECKING:
    from .core import ScoringCore


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
        from .runtime import serve_core

        for name in ("bentoml._internal.server.http_app", "bentoml.access", "uvicorn.error"):
            logging.getLogger(name).addFilter(_OneLine())
        #: this worker's core, kept on the version the service serves: a reload reaches one
        #: worker, which publishes the version; the others load it on their next call
        self.served = serve_core(os.environ.get("RISKCAST_HOME"), os.environ.get("RISKCAST_CONFIG"), on_swap=_settle)
        # what start-up loaded lives as long as the worker: out of the collector's sight, a full
        # collection no longer walks ~460k objects (230 ms, paid by whichever order triggered it)
        gc.collect()
        gc.freeze()
        # after the freeze, so that the compiler's passing objects are not kept with start-up's;
        # orders take the compiled trees once ready (~30 us less each)
        self.served.core.compile_in_background()

    @property
    def core(self) -> "ScoringCore":
        """The core of the version the service serves (a stat of ``served.json`` per call)."""
        return self.served.current()

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
    def reload(self) -> ReloadResponse:
        """Load the bundle the champion alias points to now and swap it in, in every worker:
        this one before it answers, the others on their next call. Requests keep being answered.
        The body is empty or ``{}`` (the gate refuses anything else)."""
        try:
            model, previous = self.served.reload()
        except RiskcastError as exc:
            raise _to_http(exc) from None
        return ReloadResponse(model=model.name, version=model.version, previous_version=previous)


def _settle(core: "ScoringCore") -> None:
    """After a swap: the replaced model was frozen with start-up, so the collector sees it once
    to free it; then the new model's trees compile (a copy another worker compiled is reused)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    core.compile_in_background()


def answer_order(request: Any) -> bytes:
    """``POST /score`` as the gate answers it: this worker's service instance decides and the
    response model checks the answer before it is sent, as BentoML's handler would."""
    return ScoreResponse.model_validate(bentoml.get_current_service().decide(request)).model_dump_json().encode()


def ready_status() -> dict:
    """The body of a ready /readyz: the model this worker decides with, how old its order-entry
    store is and whether the store was built with the model's feature registry, and whether the
    worker decides with the version the service serves (``served``: when not, why)."""
    service = bentoml.get_current_service()
    core = service.core
    model = {"name": core.model.name, "version": core.model.version} if core.model else None
    return {"model": model, "store": core.store_status(), "served": service.served.status()}


class _Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests: list[ScoreRequest] = Field(max_length=10_000)  # type: ignore[valid-type]


RiskcastService.add_asgi_middleware(RequestGate, validators={"/score": ScoreRequest, "/score_batch": _Batch,
                                                            "/admin/reload": ReloadRequest},
                                    direct={"/score": answer_order}, ready=ready_status,
                                    optional_body=("/admin/reload",))
