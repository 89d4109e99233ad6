"""The desk's pages and the cases' JSON, as ASGI apps the service mounts (``/desk``, ``/cases``).

Pages are rendered on the server from the templates beside this module and load nothing from
elsewhere (one style sheet, served here; no script). An analyst signs in with a desk key: the
page keeps it in a cookie that only this site's own pages send (``SameSite=Strict``, not
readable by scripts), and every request looks the key up again, so a revoked key or a
deactivated user is out at once. A form's POST from another origin is refused.

The edges only translate: a form becomes a call of ``DeskStore.decide``, whose refusals
(authority, a stale case, a wrong field) come back on the page in words with their status.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import date
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from riskcast.errors import AuthError, AuthorityError, InputError, NotFoundError, RiskcastError

from .authority import ACTIONS, DECIDING
from .store import Case, DeskStore, User

COOKIE = "riskcast_desk"
_HERE = Path(__file__).parent
#: roles that see the override report (those who answer for the desk's decisions)
REPORT_ROLES = ("manager", "credit_committee", "admin")
#: the collections page's views: the steps due now, every overdue invoice, the stop list's
COLLECTION_VIEWS = ("due", "all", "stop")
#: rows the collections page lists at most (the worklist file holds them all)
COLLECTION_ROWS = 200


class DeskContext:
    """What a page needs of the running service: its core (model, store, desk, audit log) and
    where the work directory's files are. ``served`` is the worker's ``ServedCore``."""

    def __init__(self, served: Callable[[], Any]) -> None:
        self._served = served

    @property
    def core(self) -> Any:
        return self._served().current()

    @property
    def paths(self) -> Any:
        return self._served().paths

    @property
    def desk(self) -> DeskStore:
        desk = self.core.desk
        if desk is None:
            raise NotFoundError("desk: this service runs without a credit desk", field="desk")
        return desk


def _templates() -> Any:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(_HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters["money"] = lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.2f}"
    env.filters["pct"] = lambda v: "-" if v is None else f"{100 * float(v):.2f}%"
    env.filters["label"] = lambda v: "" if v is None else str(v).replace("_", " ")
    return env


def desk_app(served: Callable[[], Any]) -> Any:
    """The ``/desk`` pages."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, RedirectResponse, Response
    from starlette.routing import Route

    ctx = DeskContext(served)
    env = _templates()

    def page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**values), status_code=status,
                            headers={"Cache-Control": "no-store", "Content-Security-Policy":
                                     "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                                     "frame-ancestors 'none'; base-uri 'none'", "X-Content-Type-Options": "nosniff",
                                     "Referrer-Policy": "same-origin"})

    def signed_in(request: Request) -> User:
        return ctx.desk.authenticate(request.cookies.get(COOKIE))

    def guarded(handler: Callable[..., Response], roles: tuple[str, ...] | None = None) -> Callable[[Request], Any]:
        """An endpoint of a signed-in user: its form read on the event loop, the rest (the
        database's work) in a thread, so that the worker's orders are not kept waiting."""
        async def endpoint(request: Request) -> Response:
            form = {k: str(v) for k, v in (await request.form()).items()} if request.method == "POST" else {}
            return await run_in_threadpool(signed, handler, roles, request, form)
        return endpoint

    def signed(handler: Callable[..., Response], roles: tuple[str, ...] | None, request: Request,
               form: dict[str, str]) -> Response:
        """The user signed in, a form from this site, the role the page is for; then the page."""
        try:
            user = signed_in(request)
        except AuthError:
            return RedirectResponse(f"{request.scope.get('root_path', '')}/signin?next="
                                    f"{quote(request.url.path)}", status_code=303)
        if request.method == "POST" and not _same_origin(request):
            return page("error.html", 403, user=user, title="Refused",
                        message="This form was sent from another site; open the desk and send it again.")
        if roles is not None and user.role not in roles:
            return page("error.html", 403, user=user, title="Not for your role",
                        message=f"This page is for {', '.join(r.replace('_', ' ') for r in roles)}.")
        try:
            return handler(request, user, form)
        except NotFoundError as exc:
            return page("error.html", 404, user=user, title="Not found", message=str(exc))
        except RiskcastError as exc:
            return page("error.html", exc.http_status, user=user, title="Not possible", message=str(exc))

    async def signin_form(request: Request) -> Response:
        return page("signin.html", next=_safe_next(request.query_params.get("next")), error=None)

    async def signin(request: Request) -> Response:
        form = await request.form()
        key = str(form.get("key") or "").strip()
        target = _safe_next(str(form.get("next") or ""))
        if not _same_origin(request):
            return page("signin.html", 403, next=target, error="This form was sent from another site.")
        try:
            await run_in_threadpool(ctx.desk.authenticate, key)
        except AuthError as exc:
            return page("signin.html", 401, next=target, error=str(exc).removeprefix("key: "))
        out = RedirectResponse(target, status_code=303)
        out.set_cookie(COOKIE, key, httponly=True, samesite="strict", path="/desk", secure=request.url.scheme == "https")
        return out

    async def signout(request: Request) -> Response:
        out = RedirectResponse(f"{request.scope.get('root_path', '')}/signin", status_code=303)
        out.delete_cookie(COOKIE, path="/desk")
        return out

    def queue(request: Request, user: User, _form: dict[str, str]) -> Response:
        cases = ctx.desk.queue()
        return page("queue.html", user=user, cases=cases, title="Referral queue")

    def case_page(request: Request, user: User, form: dict[str, str], *, error: str | None = None,
                  status: int = 200) -> Response:
        case = ctx.desk.case(_int(request.path_params["case_id"], "case_id"))
        return page("case.html", status, user=user, case=case, title=f"Case {case.case_id}", error=error,
                    form=form, actions=ACTIONS, reason_codes=ctx.desk.cfg.reason_codes,
                    can_decide=user.role in DECIDING and case.state != "decided",
                    needed=_needed_text(case, ctx.desk), notice=request.query_params.get("done"))

    def decide(request: Request, user: User, form: dict[str, str]) -> Response:
        case_id = _int(request.path_params["case_id"], "case_id")
        try:
            case = ctx.desk.decide(
                case_id, user, _int(form.get("seen"), "seen"), form.get("action", ""),
                reason_code=form.get("reason_code", ""), text=form.get("text", ""),
                credit_limit=_amount(form.get("credit_limit"), "credit_limit"),
                terms_days=_opt_int(form.get("terms_days"), "terms_days"),
                conditions=[c for c in (form.get("conditions") or "").splitlines()])
        except (InputError, AuthorityError) as exc:
            return case_page(request, user, form, error=str(exc), status=exc.http_status)
        done = "awaiting-second" if case.state == "awaiting_second" else "decided"
        return RedirectResponse(f"{request.scope.get('root_path', '')}/cases/{case_id}?done={done}", status_code=303)

    def lookup(request: Request, user: User, _form: dict[str, str]) -> Response:
        q = (request.query_params.get("q") or "").strip()
        if q:
            return RedirectResponse(f"{request.scope.get('root_path', '')}/customers/{quote(q, safe='')}",
                                    status_code=303)
        return page("lookup.html", user=user, title="Customer lookup")

    def customer(request: Request, user: User, _form: dict[str, str]) -> Response:
        cid = request.path_params["customer_id"]
        core = ctx.core
        try:
            view = core.customer_view(cid)
        except NotFoundError:
            raise
        except InputError as exc:  # not in the book
            raise NotFoundError(f"customer_id: {cid!r} is not in the book", field="customer_id") from exc
        desk = ctx.desk
        history = core.audit.of_customer(cid) if core.audit is not None else []
        for h in history:
            h["reasons"] = [r.get("text") for r in json.loads(h["reasons"] or "[]")]
        invoices = _open_invoices(ctx.paths, cid)
        overdue, _summary, _on = _collections(ctx, cid)
        return page("customer.html", user=user, title=f"Customer {cid}", cid=cid, view=view,
                    overdue=[] if overdue is None else overdue.to_dict("records"), steps=desk.steps(cid),
                    approved=desk.approved_limit(cid), limits=desk.limits(cid), cases=desk.cases(cid),
                    invoices=invoices, aged=_aged(invoices, core.cfg.receivables.buckets), history=history,
                    today=desk.clock())

    def collections(request: Request, user: User, _form: dict[str, str]) -> Response:
        q = request.query_params
        show, stage, cid = q.get("show") or "due", q.get("stage") or "", (q.get("customer") or "").strip()
        if show not in COLLECTION_VIEWS:
            raise InputError(f"show: one of {', '.join(COLLECTION_VIEWS)}; got {show!r}", field="show")
        work, summary, as_of = _collections(ctx, cid or None)
        rows = None
        if work is not None:
            import numpy as np

            keep = np.ones(len(work), dtype=bool)
            if show == "due":
                keep &= work["step_due_now"].to_numpy()
            elif show == "stop":
                keep &= work["stops_orders"].to_numpy()
            if stage:
                keep &= work["stage"].to_numpy() == stage
            rows = work[keep]
        stages = [s.name for s in ctx.core.cfg.collections.stages]
        return page("collections.html", user=user, title="Collections", rows=None if rows is None else
                    rows.head(COLLECTION_ROWS).to_dict("records"), shown=0 if rows is None else len(rows),
                    limit=COLLECTION_ROWS, summary=summary, as_of=as_of, show=show, stage=stage, customer=cid,
                    stages=stages, views=COLLECTION_VIEWS, notice=q.get("done"))

    def step_page(request: Request, user: User, form: dict[str, str], *, error: str | None = None,
                  status: int = 200) -> Response:
        src = form or request.query_params
        cid, inv = str(src.get("customer") or ""), str(src.get("invoice") or "")
        work, _summary, as_of = _collections(ctx, cid or None)
        row = None if work is None else work[work["invoice_id"].astype(str) == inv]
        if row is None or not len(row):
            raise NotFoundError(f"invoice: {inv!r} of customer {cid!r} is not on the worklist of the last rescore",
                                field="invoice")
        cfg = ctx.core.cfg.collections
        return page("step.html", status, user=user, title=f"Invoice {inv}", row=row.iloc[0].to_dict(), as_of=as_of,
                    steps=ctx.desk.steps(cid, inv), stages=[s.name for s in cfg.stages], outcomes=cfg.outcomes,
                    form=form, error=error, request_id=uuid.uuid4().hex, can_record=user.role in DECIDING,
                    notice=request.query_params.get("done"))

    def record_step(request: Request, user: User, form: dict[str, str]) -> Response:
        cid, inv = form.get("customer", ""), form.get("invoice", "")
        try:
            ctx.desk.record_step(cid, inv, form.get("stage", ""), form.get("outcome", ""), user.user_id,
                                 note=(form.get("note") or "").strip() or None,
                                 promised_date=(form.get("promised_date") or "").strip() or None,
                                 request_id=form.get("request_id") or None)
        except InputError as exc:
            return step_page(request, user, form, error=str(exc), status=exc.http_status)
        return RedirectResponse(f"{request.scope.get('root_path', '')}/collections/step?customer="
                                f"{quote(cid, safe='')}&invoice={quote(inv, safe='')}&done=recorded", status_code=303)

    def overrides(request: Request, user: User, _form: dict[str, str]) -> Response:
        from .overrides import override_report

        defaults, last = _defaults(ctx.paths)
        report = override_report(ctx.desk.cases(), defaults, horizon_months=ctx.core.cfg.training.horizon_months,
                                 data_last_date=last)
        return page("overrides.html", user=user, title="Overrides", report=report)

    async def style(_request: Request) -> Response:
        return Response((_HERE / "static" / "desk.css").read_bytes(), media_type="text/css",
                        headers={"Cache-Control": "max-age=300"})

    return Starlette(routes=[
        Route("/", guarded(queue)),
        Route("/signin", signin_form, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/cases/{case_id}", guarded(case_page), methods=["GET"]),
        Route("/cases/{case_id}", guarded(decide), methods=["POST"]),
        Route("/customers", guarded(lookup)),
        Route("/customers/{customer_id}", guarded(customer)),
        Route("/overrides", guarded(overrides, REPORT_ROLES)),
        Route("/collections", guarded(collections)),
        Route("/collections/step", guarded(step_page), methods=["GET"]),
        Route("/collections/step", guarded(record_step, DECIDING), methods=["POST"]),
        Route("/desk.css", style),
    ])


def cases_app(served: Callable[[], Any]) -> Any:
    """``/cases``: a case's state and its orders' final decisions, as JSON for the ERP
    (behind the service's API key, as ``/score`` is)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    ctx = DeskContext(served)

    def answer(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                return JSONResponse(await run_in_threadpool(fn, request))
            except RiskcastError as exc:
                return JSONResponse({"error": str(exc), "field": exc.field}, status_code=exc.http_status)
        return endpoint

    def one(request: Request) -> dict:
        return _case_json(ctx.desk.case(_int(request.path_params["case_id"], "case_id")))

    def of_order(request: Request) -> dict:
        rid = request.path_params["request_id"]
        case_id = ctx.desk.case_of_order(rid)
        if case_id is None:
            raise NotFoundError(f"request_id: no case holds order {rid!r}", field="request_id")
        return _case_json(ctx.desk.case(case_id))

    def listing(request: Request) -> dict:
        return {"cases": [_case_json(c, orders=False) for c in ctx.desk.queue()]}

    return Starlette(routes=[Route("/", answer(listing)), Route("/{case_id:int}", answer(one)),
                             Route("/order/{request_id}", answer(of_order))])


def _case_json(case: Case, orders: bool = True) -> dict:
    d = case.decision
    out = {"case_id": case.case_id, "customer_id": case.customer_id, "kind": case.kind, "state": case.state,
           "opened_at": case.opened_at, "exposure": case.exposure, "priority": round(case.priority, 2),
           "pd_12m": case.facts.get("pd_12m"), "grade": case.facts.get("grade"), "band": case.facts.get("band"),
           "recommended_limit": case.recommended_limit, "system_decision": case.facts.get("decision"),
           "system_reason": case.facts.get("decision_reason"),
           "awaiting_second_approval": case.state == "awaiting_second",
           "decision": None if d is None else {k: d.get(k) for k in (
               "action", "credit_limit", "terms_days", "conditions", "reason_code", "text", "approvers", "at",
               "override")}}
    if orders:
        out["orders"] = case.orders
    return out


def index_page() -> bytes:
    """The service's own front page: what it is and where its parts are (no external asset)."""
    env = _templates()
    return env.get_template("index.html").render().encode()


def _needed_text(case: Case, desk: DeskStore) -> str:
    from .authority import needed

    need = needed(max(case.exposure, case.recommended_limit or 0.0), desk.cfg)
    return need.text()


def _open_invoices(paths: Any, cid: str) -> list[dict[str, Any]]:
    """The customer's invoices open on the store's date (written by the rescore)."""
    path = Path(paths.open_invoices)
    if not path.exists():
        return []
    import pyarrow.parquet as pq

    table = pq.read_table(path, filters=[("customer_id", "==", cid)])
    return table.to_pandas().sort_values(["due_date", "invoice_id"], kind="stable").to_dict("records")


def _collections(ctx: DeskContext, customer_id: str | None = None) -> tuple[Any, dict[str, Any] | None, Any]:
    """The worklist of the last rescore (of one customer, or all), with the steps on record now,
    its summary and its date; (None, None, None) before a rescore wrote one."""
    import pandas as pd

    from riskcast.features.store import store_as_of
    from riskcast.serving.collections import collections_summary, stop_list, with_steps

    path = Path(ctx.paths.collections)
    on = store_as_of(ctx.paths.store)
    if not path.exists() or on is None:
        return None, None, None
    as_of = pd.Timestamp(on)
    work = pd.read_parquet(path, filters=[("customer_id", "==", customer_id)] if customer_id else None)
    cfg = ctx.core.cfg
    work = with_steps(work, pd.DataFrame(ctx.desk.steps(customer_id)), cfg, as_of)
    summary = collections_summary(work, stop_list(work, cfg.policy), cfg.collections, cfg.policy, as_of)
    return work, summary, as_of.date()


def _aged(invoices: list[dict[str, Any]], buckets: tuple[int, ...]) -> dict[str, float]:
    """The customer's open invoices by bucket of days past due (``data.receivables.aging``)."""
    import pandas as pd

    from riskcast.data.receivables import aging, bucket_labels

    if not invoices:
        return {}
    row = aging(pd.DataFrame(invoices), buckets).iloc[0]
    return {k: float(row[k]) for k in bucket_labels(buckets)}


def _defaults(paths: Any) -> tuple[Any, date | None]:
    """The work directory's defaults table and the data's last date, when it has a book."""
    import pandas as pd

    book = Path(paths.book)
    for name in ("defaults.parquet", "defaults.csv"):
        f = book / name
        if f.exists():
            df = pd.read_parquet(f) if f.suffix == ".parquet" else pd.read_csv(f)
            inv = book / "invoices.parquet"
            last = None
            if inv.exists():
                dates = pd.read_parquet(inv, columns=["issue_date"])["issue_date"]
                last = pd.Timestamp(dates.max()).date() if len(dates) else None
            return df, last
    return None, None


def _same_origin(request: Any) -> bool:
    """A POST whose Origin (when the browser sends one) is this site."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of the desk, never another site."""
    if not target or not target.startswith("/desk") or target.startswith("//"):
        return "/desk/"
    return target


def _int(value: Any, name: str) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        raise InputError(f"{name}: a whole number; got {value!r}", field=name) from None


def _opt_int(value: Any, name: str) -> int | None:
    return None if value is None or str(value).strip() == "" else _int(value, name)


def _amount(value: Any, name: str) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        v = float(str(value).replace(",", "").strip())
    except ValueError:
        raise InputError(f"{name}: a number; got {value!r}", field=name) from None
    if not math.isfinite(v):
        raise InputError(f"{name}: a finite number; got {value!r}", field=name)
    return v
