"""The BentoML service: translates HTTP to the scoring core and back, nothing more.

Start it with ``riskcast serve``; it reads the work directory from ``RISKCAST_HOME``, an
optional configuration file from ``RISKCAST_CONFIG`` and, when set, the API key every scoring
and admin call must carry in ``X-API-Key`` from ``RISKCAST_API_KEY`` (see ``gate``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
import warnings
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Union

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

from riskcast.config import REQUEST_TIMEOUT_S
from riskcast.errors import AuditUnavailableError, RiskcastError

from .desk.web import cases_app, desk_app
from .gate import MAX_BATCH, MAX_BODY, TOO_LARGE, KnownPaths, RequestGate, log_refusal
from .schemas import OrderError, ReloadRequest, ReloadResponse, ScoreRequest, ScoreResponse

if TYPE_CHECKING:
    from .core import ScoringCore

logger = logging.getLogger("riskcast.serving")


def _to_http(exc: RiskcastError) -> BentoMLException:
    return BentoMLException(str(exc), error_code=HTTPStatus(exc.http_status))


class _OneLine(logging.Filter):
    """Errors are logged as one line: no tracebacks (they can carry request values)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


class _EdgeService(bentoml.Service):
    """The service with ``KnownPaths`` outermost. BentoML's metrics label each request with its
    path before any middleware added with ``add_asgi_middleware`` runs; only outside them is a
    path the service does not serve kept from becoming a label of its own."""

    __slots__ = ()

    def to_asgi(self, is_main: bool = True) -> Any:
        from starlette.responses import HTMLResponse
        from starlette.routing import Route

        from .desk.web import index_page

        app = super().to_asgi(is_main)

        async def index(_request: Any) -> HTMLResponse:
            return HTMLResponse(index_page())

        # the service's own front page in place of the framework's (which loads a third-party script)
        app.router.routes = [Route("/", index, methods=["GET"]) if getattr(r, "path", None) == "/" else r
                             for r in app.router.routes]
        app.add_middleware(KnownPaths, routes=app.routes)
        return app


def _warning_line(message: Any, category: type, _filename: str, _lineno: int, _file: Any = None,
                  _line: Any = None) -> None:
    """A library's warning as one line of the log, without the source file it names (a path)."""
    text = str(message).strip().splitlines()
    logger.warning("%s: %s", category.__name__, text[0][:200] if text else "")


def _served() -> Any:
    """This worker's ``ServedCore``, for the desk's pages and the cases' JSON."""
    return bentoml.get_current_service().served


# Two worker processes: one per core of the machines this runs on (the GIL serialises one).
# No tracing spans for scoring calls: with no exporter they only cost (~0.4 ms of ~1.6 ms per
# order, measured through the ASGI app); each decision is in the audit log instead. No access
# log by default: a line per request cost 0.25-0.5 ms of an order's answer at 100-500 orders/s
# (side by side, three rounds each); /metrics counts every request by path and status, and
# BENTOML_CONFIG_OPTIONS='services.riskcast.logging.access.enabled=true' turns the log back on.
@bentoml.asgi_app(desk_app(_served), path="/desk")
@bentoml.asgi_app(cases_app(_served), path="/cases")
@bentoml.service(name="riskcast", workers=2, http={"max_request_size": MAX_BODY}, traffic={"timeout": REQUEST_TIMEOUT_S},
                 tracing={"excluded_urls": "score,score_batch"}, logging={"access": {"enabled": False}},
                 service_class=_EdgeService)
class RiskcastService:
    """POST /score for one order, POST /score_batch for many, POST /admin/reload after the
    champion alias moved; /livez, /readyz, /metrics built in."""

    def __init__(self) -> None:
        from .runtime import serve_core

        for name in ("bentoml._internal.server.http_app", "bentoml.access", "uvicorn.error"):
            logging.getLogger(name).addFilter(_OneLine())
        warnings.showwarning = _warning_line  # this worker's process is the service's own
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
        try:
            return ScoreResponse(**await _decide_on_loop(self, fields))
        except RiskcastError as exc:
            log_refusal("/score", exc, fields.get("request_id"), fields.get("customer_id"))
            raise _to_http(exc) from None

    @bentoml.api
    def score_batch(self, requests: list[ScoreRequest]) -> list[Union[ScoreResponse, OrderError]]:  # type: ignore[valid-type]
        """Each order is decided on its own: one that cannot be (a customer not in the book, a
        refused override, a request_id on record for another order) is an ``OrderError`` in its
        place. A body that is not a valid batch is refused whole (400, by the gate)."""
        if len(requests) > MAX_BATCH:
            raise BentoMLException(f"requests: at most {MAX_BATCH} orders per batch",
                                   error_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        # in BentoML's thread pool, under its time-out counted from the request's arrival: the
        # record must be committed well before it (half of it from here), or BentoML answers
        # 504 for a batch that is on record and the caller's retry is a second decision
        deadline = time.monotonic() + REQUEST_TIMEOUT_S / 2
        try:
            answers = self.core.score_orders([self._order(dict(r)) for r in requests], each=True, deadline=deadline)
        except RiskcastError as exc:
            first = requests[0] if requests else None
            log_refusal("/score_batch", exc, getattr(first, "request_id", None), getattr(first, "customer_id", None),
                     more=max(0, len(requests) - 1))
            raise _to_http(exc) from None
        return [OrderError(**d) if "error" in d else ScoreResponse(**d) for d in answers]

    @bentoml.api(route="/admin/reload")
    def reload(self) -> ReloadResponse:
        """Load the bundle the champion alias points to now and swap it in, in every worker:
        this one before it answers, the others on their next call. Requests keep being answered.
        The body is empty or ``{}`` (the gate refuses anything else). Over HTTP the gate
        answers this path with ``answer_reload`` (the same call, its refusals in words)."""
        try:
            return self._reloaded()
        except RiskcastError as exc:
            raise _to_http(exc) from None

    def _reloaded(self) -> ReloadResponse:
        model, previous = self.served.reload()
        return ReloadResponse(model=model.name, version=model.version, previous_version=previous)


def _settle(core: "ScoringCore") -> None:
    """After a swap: the replaced model was frozen with start-up, so the collector sees it once
    to free it; then the new model's trees compile (a copy another worker compiled is reused)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    core.compile_in_background()


async def answer_order(request: Any) -> bytes:
    """``POST /score`` as the gate answers it: this worker's service instance decides and the
    response model checks the answer before it is sent, as BentoML's handler would."""
    answer = await _decide_on_loop(bentoml.get_current_service(), request)
    return ScoreResponse.model_validate(answer).model_dump_json().encode()


async def answer_reload(_request: Any) -> bytes:
    """``POST /admin/reload`` as the gate answers it: loading a model takes a second or more,
    so it runs in a thread while the loop keeps answering; a refusal (503: the new version is
    damaged or worse than the one served) reaches the caller in words, which BentoML's handler
    replaces with a generic text for any 5xx."""
    service = bentoml.get_current_service()
    answer = await asyncio.get_running_loop().run_in_executor(None, service._reloaded)
    return answer.model_dump_json().encode()


async def _decide_on_loop(service: Any, request: Any) -> dict:
    """One order decided on the event loop (~0.3 ms; a hand-off to a thread alone cost ~1 ms)
    with a record that does not wait for another writer's lock. When the log is held, the
    decision is made again in a thread that waits for it, within the order's audit budget
    counted from now, while the loop answers health checks and other orders."""
    order = service._order(request if isinstance(request, dict) else dict(request))
    core = service.core
    budget = core.cfg.serving.audit_budget_ms / 1000.0
    deadline = time.monotonic() + budget
    referrals: list = []
    try:
        answer = core.score_orders([order], deadline=deadline, wait=False, referrals=referrals)
    except AuditUnavailableError as exc:
        from .audit import AuditBusy

        if not isinstance(exc, AuditBusy):
            raise
    else:
        if referrals:  # on record: its case is opened where a wait for the desk's database blocks no one
            await asyncio.get_running_loop().run_in_executor(None, core.open_cases, referrals, answer)
        return answer[0]
    work = asyncio.get_running_loop().run_in_executor(
        None, lambda: service.core.score_orders([order], deadline=deadline)[0])
    try:
        # a thread that starts after the deadline records nothing: the record checks it first
        return await asyncio.wait_for(work, timeout=max(0.0, deadline - time.monotonic()) + 0.05)
    except asyncio.TimeoutError:
        raise AuditUnavailableError("audit log: the decision could not be put on record in time; retry") from None


def ready_status() -> dict:
    """The body of /readyz: each dependency of a decision and whether it can serve (``ready``:
    an order can be decided and put on record now; ``failed``: the dependencies that stop it),
    and whether the worker decides with the version the service serves (``served``)."""
    service = bentoml.get_current_service()
    core = service.core
    bundle = core.model.bundle if core.model is not None else None
    loaded = bundle is not None and getattr(bundle, "booster", None) is not None
    model: dict[str, Any] = {"loaded": loaded}
    if core.model is not None:
        model.update(name=core.model.name, version=core.model.version)
    if not loaded:
        model["error"] = core.model_error or "not loaded"
    scorecard = getattr(bundle, "scorecard", None) is not None
    card: dict[str, Any] = {"available": scorecard}
    if not scorecard:
        card["error"] = getattr(bundle, "scorecard_error", None) or "no bundle loaded"
    store = core.store_status()
    # no store configured: orders that supply their features are still decided
    store_ok = core.store is None or bool(store.get("available", "cannot be read" not in str(store.get("note", ""))))
    if core.audit is None:
        audit: dict[str, Any] = {"available": True, "note": "decisions are not recorded"}
    else:
        problem = core.audit.probe()
        audit = {"available": problem is None, **({"error": problem} if problem else {})}
    failed = [name for name, ok in (("model", loaded or scorecard), ("scorecard", loaded or scorecard),
                                    ("store", store_ok), ("audit", audit["available"])) if not ok]
    return {"ready": not failed, "failed": failed, "model": model, "scorecard": card, "store": store,
            "audit": audit, "served": service.served.status()}


class _Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests: list[ScoreRequest]  # type: ignore[valid-type]

    @field_validator("requests", mode="before")
    @classmethod
    def _at_most(cls, value: Any) -> Any:
        """More orders than a batch takes are refused as too large (413) before any of them is
        validated."""
        if isinstance(value, list) and len(value) > MAX_BATCH:
            raise PydanticCustomError(TOO_LARGE, "at most {limit} orders per batch", {"limit": MAX_BATCH})
        return value


RiskcastService.add_asgi_middleware(RequestGate, validators={"/score": ScoreRequest, "/score_batch": _Batch,
                                                            "/admin/reload": ReloadRequest},
                                    direct={"/score": answer_order, "/admin/reload": answer_reload}, ready=ready_status,
                                    optional_body=("/admin/reload",))
