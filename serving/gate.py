"""The HTTP edge in front of the service: API key, body size, validation errors that name the
field in the documented shape, and an OpenAPI document that says what the service does.

BentoML answers a malformed body with pydantic's error list (its own document promises a
string) and logs a traceback for it; a request without a body is valid by its document. The
gate validates scoring and reload bodies with the same models first, so a caller gets
``{"error": "<field>: <problem>", "detail": "..."}`` and the log one line.

Before a body is parsed it is bounded: JSON only (415 for a form, a multipart body or
text/plain, which a page may send across origins unasked), at most 1 MiB (413), nested at most
``MAX_DEPTH`` levels with numbers of at most ``MAX_NUMBER`` characters (400): the parser would
otherwise recurse past the stack or convert thousands of digits. ``KnownPaths``, outside
BentoML's metrics, hands on a path the service does not serve as one path, answered 404.

A path in ``direct`` (``POST /score``) is then answered by the gate itself with the service's
own decision function: BentoML's generic handler would parse and validate the body a second
time and build the response through its IO descriptors, about half a millisecond of a
1.2 ms answer. Everything around it (workers, metrics, the access log when it is on,
time-out, concurrency limit, health, the OpenAPI document) stays BentoML's.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import logging
import os
import re
from typing import Any, Awaitable, Callable, Collection, Sequence

import numpy as np
from pydantic import BaseModel, TypeAdapter, ValidationError

from riskcast.errors import RiskcastError

MAX_BODY = 1_048_576
#: bounds checked on the bytes before a body is parsed: the parser recurses once per level (a
#: deep document exhausts the stack) and converts a number digit by digit
MAX_DEPTH = 64
MAX_NUMBER = 100
#: orders in one batch at most (``maxItems`` of the document; more are refused as too large)
MAX_BATCH = 10_000
#: the type of a validation error that means "more than the service takes" (413, not 400)
TOO_LARGE = "too_large"
#: the path an unknown path is answered under, so that metrics label all of them alike
UNKNOWN_PATH = "/(unknown)"
_SCORING = ("/score", "/score_batch")
_GUARDED = (*_SCORING, "/admin/", "/cases")
_ERROR = {"$ref": "#/components/schemas/InvalidArgument"}
_RELOAD = "/admin/reload"
_KEY_REFUSED = "X-API-Key missing or wrong (when the service has a key)"
_RELOAD_RESPONSES = {
    "400": "The body is neither empty nor {}: `body: <problem>` or `<field>: Extra inputs are not permitted`",
    "401": _KEY_REFUSED,
    "413": "Body larger than 1 MiB",
    "415": "A body that is not application/json: `content-type: <problem>`",
    "503": "No model could be loaded, the new version is damaged or worse than the one served, or it could not be "
           "announced to the other workers; the service keeps the version it had",
}
_EXTRA_RESPONSES = {
    "401": _KEY_REFUSED,
    "413": "Body larger than 1 MiB, or more than 10,000 orders in a batch",
    "415": "A body that is not application/json: `content-type: <problem>`",
    "503": "The decision could not be put on record, or no model could be reloaded; retry",
    "409": "request_id is on record for another order (a retry repeats its order exactly)",
    "422": "features.<name>: the request would replace a value the book holds (serving.allow_overrides)",
}

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
Answer = Callable[[Any], "bytes | Awaitable[bytes]"]
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
        #: the body of /readyz; its ``ready`` false turns BentoML's ready verdict into a 503
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
        if path == UNKNOWN_PATH:  # what ``KnownPaths`` made of a path the service does not serve
            await _reply(send, 404, "path: no such endpoint")
            return
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
        given, media_problem = _media_type(scope.get("headers") or [])
        if media_problem is not None:  # refused unread: a form, a multipart body, text/plain
            await _reply(send, 415, media_problem)
            return
        body, too_big = await _read(receive)
        if too_big:
            await _reply(send, 413, f"body: larger than {MAX_BODY:,} bytes")
            return
        if body and not given:
            await _reply(send, 415, "content-type: missing; a body must be sent as application/json")
            return
        problem, request = self._check(path, body)
        if problem is not None:
            await _reply(send, *problem)
        elif path in self.direct:
            await _answer(send, self.direct[path], request, path)
        else:
            # BentoML reads the body by its declared type: the checked JSON, with its length; an
            # optional body left out stands for {}
            forwarded = body or b"{}"
            await self.app(_as_json(scope, forwarded), _replay(forwarded), _plain_errors(send))

    def _check(self, path: str, body: bytes) -> tuple[tuple[int, str, str] | None, Any]:
        """(status, error, detail) and None for a body the path refuses, else None and the
        validated body."""
        if not body and path in self.optional_body:  # left out; whitespace is no JSON document
            body = b"{}"
        if not body.strip():
            return (400, "body: a JSON object is required", "the request has no body"), None
        shape = _shape_problem(body)
        if shape is not None:
            return (400, *shape), None
        try:
            # UTF-8, the encoding of JSON on the wire (RFC 8259); a leading byte-order mark is ignored.
            # NaN and Infinity are refused below by the model (allow_inf_nan=False)
            raw = json.loads(body.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            return (400, "body: not valid UTF-8", f"byte {exc.start} cannot be decoded"), None
        except ValueError as exc:
            return (400, "body: not valid JSON", str(exc)[:200]), None
        validator = self.validators[path]
        try:
            if isinstance(validator, TypeAdapter):
                return None, validator.validate_python(raw)
            return None, validator.model_validate(raw)
        except ValidationError as exc:
            return _refusal(exc), None


async def _answer(send: Send, answer: Answer, request: Any, path: str) -> None:
    """200 with what ``answer`` made of the request (its bytes, or a coroutine that gives them:
    one that may wait does so without holding the loop); its refusals as documented errors, and
    one a dependency caused (5xx) also as one line in the log."""
    try:
        body = answer(request)
        if inspect.isawaitable(body):
            body = await body
    except RiskcastError as exc:
        log_refusal(path, exc, getattr(request, "request_id", None), getattr(request, "customer_id", None))
        await _reply(send, exc.http_status, str(exc))  # our own sentence: the field and the problem
        return
    except Exception as exc:  # a bug: one line in the log, nothing of it in the answer
        logger.error("%s failed: %s", path, type(exc).__name__)
        await _reply(send, 500, _UNEXPECTED)
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [_JSON, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def log_refusal(path: str, exc: RiskcastError, request_id: Any, customer_id: Any, more: int = 0) -> None:
    """A decision refused for the service's own fault (5xx) leaves one line in the log: what
    was refused and why, no traceback and no request values beyond its ids (a batch: its
    first order's, and how many more)."""
    if exc.http_status >= 500:
        also = f" and {more} more" if more else ""
        logger.warning("%s refused %d: request_id %s, customer %s%s: %s", path, exc.http_status,
                       request_id, customer_id, also, exc)


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


def _refusal(exc: ValidationError) -> tuple[int, str, str]:
    """A body the model refuses: 400 naming the field, or 413 when it holds more than the
    service takes (an error of type ``TOO_LARGE``, which then heads the answer)."""
    first, every = field_errors(exc)
    for err in exc.errors(include_url=False):
        if err["type"] == TOO_LARGE:
            return 413, f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}", every
    return 400, first, every


_JSON_MEDIA = re.compile(r"application/(?:[a-z0-9!#$&^_.-]+\+)?json")
_MEDIA_TOKEN = re.compile(r"[a-z0-9!#$&^_.+-]{1,64}/[a-z0-9!#$&^_.+-]{1,64}")


def _media_type(headers: Sequence[tuple[bytes, bytes]]) -> tuple[bool, str | None]:
    """Whether the request says what its body is, and why that is not JSON (``None`` when it
    is: ``application/json`` or a ``+json`` type, in UTF-8). A form or a multipart body is not
    what the service reads, and ``text/plain`` is what a page may send across origins unasked."""
    values = [v for k, v in headers if k.lower() == b"content-type"]
    if not values:
        return False, None
    if len(values) > 1:
        return True, "content-type: given more than once"
    media, *params = values[0].decode("latin-1").split(";")
    media = media.strip().lower()
    if not _JSON_MEDIA.fullmatch(media):
        named = f", not {media}" if _MEDIA_TOKEN.fullmatch(media) else ""
        return True, f"content-type: must be application/json{named}"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return True, "content-type: the charset of a JSON body must be utf-8"
    return True, None


_ESCAPE = re.compile(rb"\\.", re.DOTALL)
#: a number's characters as 9s (the rest unchanged): a run of 9s outside strings is a number
_AS_NINES = bytes.maketrans(b"0123456789+-.eE", b"9" * 15)
_LONG_NUMBER = b"9" * (MAX_NUMBER + 1)
#: what nesting is read from: quotes and brackets, ``{}`` as ``[]``
_FOLD = bytes.maketrans(b"{}", b"[]")
_NOT_MARKS = bytes(range(256)).translate(None, b'"[]{}')


def _outside_strings(text: bytes) -> bytes:
    """``text`` without its strings; their escapes are already gone."""
    return b"".join(text.split(b'"')[::2])


def _shape_problem(body: bytes) -> tuple[str, str] | None:
    """Why ``body`` is not parsed at all: nested deeper than ``MAX_DEPTH`` levels, or a number
    longer than ``MAX_NUMBER`` characters, outside strings (``None``: neither). Read from the
    bytes with translations and array sums, no step per byte in Python: a score body costs a
    couple of microseconds, a batch of 10,000 orders about a millisecond and a half (an eighth of
    its parse), the worst body of 1 MiB a few milliseconds.

    The depth is exact for a JSON document; for a malformed one it is at least the depth the
    parser reaches before it finds the fault, so no body takes the parser deeper."""
    text = _ESCAPE.sub(b"", body) if b"\\" in body else body  # an escaped quote ends no string
    if _LONG_NUMBER in text.translate(_AS_NINES) and _LONG_NUMBER in _outside_strings(text).translate(_AS_NINES):
        return (f"body: a number longer than {MAX_NUMBER} characters",
                f"a number has at most {MAX_NUMBER} characters")
    marks = text.translate(_FOLD, _NOT_MARKS)
    if marks.count(b"[") <= MAX_DEPTH:  # a score body: fewer brackets than levels allowed
        return None
    # a string without brackets is an adjacent pair of quotes here: dropping every such pair
    # leaves each bracket inside or outside a string as it was
    marks = marks.replace(b'""', b"")
    if b'"' in marks:
        marks = _outside_strings(marks)
    # "[" is 91 and "]" 93: one level up or down; the depth is the highest running sum
    steps = 92 - np.frombuffer(marks, dtype=np.uint8).astype(np.int32)
    if int(np.cumsum(steps).max()) > MAX_DEPTH:
        return (f"body: nested deeper than {MAX_DEPTH} levels",
                f"objects and arrays nest at most {MAX_DEPTH} levels deep")
    return None


class KnownPaths:
    """ASGI middleware, outermost: a request for a path the app does not serve goes on as
    ``UNKNOWN_PATH``, which the gate answers with a 404. The metrics label every request with
    its path, so each random path would add its own series (a client could grow ``/metrics``
    without end); under one path all unknown ones share a label.

    ``routes`` are the app's: a route's fixed path and each file a static mount serves are
    known by name; any other route (a path parameter, a mounted app) matches as it routes."""

    def __init__(self, app: Any, routes: Sequence[Any]) -> None:
        from starlette.routing import Match, Mount, Route
        from starlette.staticfiles import StaticFiles

        self.app = app
        self._no_match = Match.NONE
        self.known: set[str] = set()
        self.matching: list[Any] = []
        for route in routes:
            if isinstance(route, Route) and not route.param_convertors:
                self.known.add(route.path)
            elif isinstance(route, Mount) and isinstance(route.app, StaticFiles):
                self.known.update(_files(route.path, route.app.all_directories))
            else:
                self.matching.append(route)

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope.get("type") in ("http", "websocket") and not self._known(scope):
            scope = {**scope, "path": UNKNOWN_PATH, "raw_path": UNKNOWN_PATH.encode()}
        await self.app(scope, receive, send)

    def _known(self, scope: dict) -> bool:
        path, root = scope.get("path", ""), scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        if path in self.known:
            return True
        return any(route.matches(scope)[0] is not self._no_match for route in self.matching)


def _files(prefix: str, directories: Sequence[Any]) -> set[str]:
    """The URL path of each file under ``directories``, served under ``prefix``."""
    found = set()
    for directory in directories:
        for folder, _, names in os.walk(directory):
            rel = os.path.relpath(folder, directory).replace(os.sep, "/")
            for name in names:
                found.add(f"{prefix}/{name}" if rel == "." else f"{prefix}/{rel}/{name}")
    return found


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
    """BentoML's readiness answer with ``ready()`` as its JSON body: what every dependency of a
    decision says (``ready``: whether an order can be decided and put on record). BentoML's
    not-ready verdict stands; its ready one becomes 503 when ``ready()`` says a decision cannot
    be made and recorded, so a probe takes a worker out of rotation for it too. ``ready()``
    runs in a thread: its probes may wait a little, the loop meanwhile answers orders."""

    async def answer(start: dict, _raw: bytes) -> None:  # BentoML's body is replaced
        status = start.get("status", 503)
        try:
            found = await asyncio.to_thread(ready)
            verdict = bool(found.get("ready", True)) and status == 200
            body = json.dumps({**found, "ready": verdict}).encode()
        except Exception as exc:  # noqa: BLE001 - the status stays BentoML's; the log says why
            if status == 200:  # not ready yet (starting): nothing to say beyond BentoML's verdict
                logger.error("/readyz body failed: %s", type(exc).__name__)
            verdict = status == 200
            body = json.dumps({"ready": verdict}).encode()
        if status == 200 and not verdict:
            status = 503
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"content-type")]
        headers += [_JSON, (b"content-length", str(len(body)).encode())]
        await send({**start, "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    return _rewritten(send, lambda status: True, answer)


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
                        body_schema["properties"]["requests"]["maxItems"] = MAX_BATCH
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
