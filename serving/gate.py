"""The HTTP edge in front of the service: API key, body size, validation errors that name the
field in the documented shape, and an OpenAPI document that says what the service does.

BentoML answers a malformed body with pydantic's error list (its own document promises a
string) and logs a traceback for it; a request without a body is valid by its document. The
gate validates scoring and reload bodies with the same models first, so a caller gets
``{"error": "<field>: <problem>", "detail": "..."}`` and the log one line.

A path in ``direct`` (``POST /score``) is then answered by the gate itself with the service's
own decision function: BentoML's generic handler would parse and validate the body a second
time and build the response through its IO descriptors, about half a millisecond of a
1.2 ms answer. Everything around it (workers, metrics, the access log when it is on,
time-out, concurrency limit, health, the OpenAPI document) stays BentoML's.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from typing import Any, Awaitable, Callable, Collection

from pydantic import BaseModel, TypeAdapter, ValidationError

from riskcast.errors import RiskcastError

MAX_BODY = 1_048_576
_SCORING = ("/score", "/score_batch")
_GUARDED = (*_SCORING, "/admin/")
_ERROR = {"$ref": "#/components/schemas/InvalidArgument"}
_RELOAD = "/admin/reload"
_KEY_REFUSED = "X-API-Key missing or wrong (when the service has a key)"
_RELOAD_RESPONSES = {
    "400": "The body is neither empty nor {}: `body: <problem>` or `<field>: Extra inputs are not permitted`",
    "401": _KEY_REFUSED,
    "413": "Body larger than 1 MiB",
    "503": "No model could be loaded or announced to the other workers; the service keeps the version it had",
}
_EXTRA_RESPONSES = {
    "401": _KEY_REFUSED,
    "413": "Body larger than 1 MiB, or more than 10,000 orders in a batch",
    "503": "The decision could not be put on record, or no model could be reloaded; retry",
    "409": "request_id is on record for another order (a retry repeats its order exactly)",
    "422": "features.<name>: the request would replace a value the book holds (serving.allow_overrides)",
}

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
Answer = Callable[[Any], bytes]
_JSON = (b"content-type", b"application/json")
_UNEXPECTED = "An unexpected error has occurred, please check the server log."
logger = logging.getLogger("riskcast.serving")


def field_errors(exc: ValidationError) -> tuple[str, str]:
    """The first problem as ``field: message`` and all of them, one per line."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        lines.append(f"{loc}: {err['msg']}")
    return lines[0], "; ".join(lines)


class RequestGate:
    """ASGI middleware; ``validators`` maps a path to the model its JSON body must fit (those in
    ``optional_body`` also take no body), and ``direct`` a path to the function that answers
    its validated body with the response's JSON (raising ``RiskcastError`` for a 4xx/5xx)."""

    def __init__(self, app: Any, validators: dict[str, type[BaseModel] | TypeAdapter],
                 direct: dict[str, Answer] | None = None, ready: Callable[[], dict] | None = None,
                 optional_body: Collection[str] = ()) -> None:
        self.app = app
        #: the body of a ready /readyz (BentoML's own probe decides the status)
        self.ready = ready
        key = os.environ.get("RISKCAST_API_KEY", "")
        self.key = key.encode() if key else None
        self.validators = validators
        self.direct = direct or {}
        #: paths of ``validators`` whose body may be left out (it then stands for ``{}``)
        self.optional_body = frozenset(optional_body)
        unknown = sorted(self.optional_body - set(validators))
        if unknown:
            raise ValueError(f"optional_body: {', '.join(unknown)} has no validator")

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == "/docs.json":
            await self.app(scope, receive, _fix_document(send))
            return
        if path == "/readyz" and self.ready is not None and scope.get("method") == "GET":
            await self.app(scope, receive, _ready_body(send, self.ready))
            return
        if self.key is not None and path.startswith(_GUARDED):
            given = dict(scope.get("headers") or []).get(b"x-api-key", b"")
            if not hmac.compare_digest(given, self.key):
                await _reply(send, 401, "X-API-Key: missing or wrong API key")
                return
        if path not in self.validators or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        body, too_big = await _read(receive)
        if too_big:
            await _reply(send, 413, f"body: larger than {MAX_BODY:,} bytes")
            return
        problem, request = self._check(path, body)
        if problem is not None:
            await _reply(send, 400, *problem)
        elif path in self.direct:
            await _answer(send, self.direct[path], request, path)
        else:
            # the body is JSON whatever its Content-Type said (BentoML answers a 500 for an
            # undeclared or malformed one), and an optional body left out stands for {}
            forwarded = body or b"{}"
            await self.app(_as_json(scope, forwarded), _replay(forwarded), _plain_errors(send))

    def _check(self, path: str, body: bytes) -> tuple[tuple[str, str] | None, Any]:
        """(problem, None) for a body the path refuses, else (None, the validated body)."""
        if not body and path in self.optional_body:  # left out; whitespace is no JSON document
            body = b"{}"
        if not body.strip():
            return ("body: a JSON object is required", "the request has no body"), None
        try:
            raw = json.loads(body)  # NaN and Infinity are refused below by the model (allow_inf_nan=False)
        except ValueError as exc:
            return ("body: not valid JSON", str(exc)[:200]), None
        validator = self.validators[path]
        try:
            if isinstance(validator, TypeAdapter):
                return None, validator.validate_python(raw)
            return None, validator.model_validate(raw)
        except ValidationError as exc:
            return field_errors(exc), None


async def _answer(send: Send, answer: Answer, request: Any, path: str) -> None:
    """200 with what ``answer`` made of the request; its refusals as documented errors."""
    try:
        body = answer(request)
    except RiskcastError as exc:
        await _reply(send, exc.http_status, str(exc))  # our own sentence: the field and the problem
        return
    except Exception as exc:  # a bug: one line in the log, nothing of it in the answer
        logger.error("%s failed: %s", path, type(exc).__name__)
        await _reply(send, 500, _UNEXPECTED)
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [_JSON, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _read(receive: Receive) -> tuple[bytes, bool]:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks), False


def _as_json(scope: dict, body: bytes) -> dict:
    """``scope`` with the headers of a JSON body of ``body``'s length."""
    headers = [(k, v) for k, v in scope.get("headers") or [] if k.lower() not in (b"content-type", b"content-length")]
    headers += [_JSON, (b"content-length", str(len(body)).encode())]
    return {**scope, "headers": headers}


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}
    return receive


async def _reply(send: Send, status: int, error: str, detail: str | None = None) -> None:
    payload = {"error": error, **({"detail": detail} if detail else {})}
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [_JSON, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _rewritten(send: Send, held: Callable[[int], bool], answer: Callable[[dict, bytes], Awaitable[None]]) -> Send:
    """``send`` for the app, except that an answer whose status ``held`` picks is held back,
    whole, and ``answer(start, body)`` sends what replaces it."""
    start: dict = {}
    parts: list[bytes] = []

    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            if not held(message["status"]):
                await send(message)
            else:
                start.update(message)
            return
        if not start:
            await send(message)
            return
        parts.append(message.get("body", b""))
        if message.get("more_body"):
            return
        await answer(start, b"".join(parts))
    return wrapped


def _plain_errors(send: Send) -> Send:
    """Error answers as the documented object: BentoML wraps an API's raised error in a list."""

    async def answer(start: dict, raw: bytes) -> None:
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {"error": raw.decode("utf-8", "replace")[:500]}
        if isinstance(payload, list) and len(payload) == 1:
            payload = payload[0]
        if not isinstance(payload, dict) or not isinstance(payload.get("error"), str):
            payload = {"error": json.dumps(payload)[:500]}
        if "detail" in payload and not isinstance(payload["detail"], str):
            payload["detail"] = json.dumps(payload["detail"])[:2000]
        await _reply(send, start["status"], payload["error"], payload.get("detail"))
    return _rewritten(send, lambda status: status >= 400, answer)


def _ready_body(send: Send, ready: Callable[[], dict]) -> Send:
    """BentoML's readiness answer with ``ready()`` as its JSON body when it says ready (200):
    a probe keeps BentoML's verdict, a person reads what the service decides with."""

    async def answer(start: dict, _raw: bytes) -> None:  # BentoML's body is replaced
        try:
            body = json.dumps({"ready": True, **ready()}).encode()
        except Exception as exc:  # noqa: BLE001 - the status stays BentoML's; the log says why
            logger.error("/readyz body failed: %s", type(exc).__name__)
            body = json.dumps({"ready": True}).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"content-type")]
        headers += [_JSON, (b"content-length", str(len(body)).encode())]
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    return _rewritten(send, lambda status: status == 200, answer)


def _batch_entries(doc: dict) -> None:
    """A batch answers each order with its decision or, for an order that could not be decided,
    an ``OrderError``: BentoML's document keeps only the first of the two."""
    schemas = doc.get("components", {}).get("schemas", {})
    op = doc.get("paths", {}).get("/score_batch", {}).get("post")
    if op is None or "OrderError" not in schemas or "ScoreResponse" not in schemas:
        return
    content = op.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {})
    if content.get("schema", {}).get("type") == "array":
        content["schema"]["items"] = {"anyOf": [{"$ref": "#/components/schemas/ScoreResponse"},
                                                {"$ref": "#/components/schemas/OrderError"}]}


def _reload_entry(doc: dict) -> None:
    """``POST /admin/reload`` as the gate and the service answer it: no body or ``{}``, and the
    errors in the scoring paths' shape."""
    op = doc.get("paths", {}).get(_RELOAD, {}).get("post")
    if op is None:
        return
    op["requestBody"] = {"required": False, "content": {"application/json": {"schema": {
        "type": "object", "properties": {}, "additionalProperties": False,
        "description": "Nothing, or an empty object: the champion alias says what to load"}}}}
    responses = op.setdefault("responses", {})
    responses.pop("404", None)  # a fixed route: the service never answers it with 404
    for code, text in _RELOAD_RESPONSES.items():
        responses[code] = {"description": text, "content": {"application/json": {"schema": _ERROR}}}


def _fix_document(send: Send) -> Send:
    """Buffer the generated document and state what it leaves out: scoring bodies are required,
    the statuses the gate and the audit log add, and what ``/admin/reload`` takes and answers."""
    start: dict = {}
    parts: list[bytes] = []

    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        parts.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = b"".join(parts)
        if start.get("status") == 200:
            doc = json.loads(body)
            for path in _SCORING:
                op = doc.get("paths", {}).get(path, {}).get("post")
                if op is None:
                    continue
                if "requestBody" in op:
                    op["requestBody"]["required"] = True
                    body_schema = op["requestBody"]["content"]["application/json"]["schema"]
                    ref = body_schema.get("$ref", "")
                    if ref.startswith("#/components/schemas/"):
                        body_schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
                    body_schema["additionalProperties"] = False  # the gate refuses unknown fields
                    if "requests" in body_schema.get("properties", {}):
                        body_schema["properties"]["requests"]["maxItems"] = 10_000
                for code, text in _EXTRA_RESPONSES.items():
                    op["responses"].setdefault(code, {"description": text, "content": {"application/json": {"schema": _ERROR}}})
            _batch_entries(doc)
            _reload_entry(doc)
            body = json.dumps(doc).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    return wrapped
