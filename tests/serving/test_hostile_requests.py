"""Requests a hostile or careless client sends, against the service in process: each is answered
in the documented shape (``{"error": "<field>: <problem>", "detail": ...}``, JSON) with a 4xx,
never a 500; no answer names a library, a URL or a file; unknown paths cannot grow /metrics."""

import http.client
import json
import random
import re
import time

import pandas as pd
import pytest

from riskcast.serving.gate import MAX_DEPTH, MAX_NUMBER

BODY_PATHS = ["/score", "/score_batch", "/admin/reload"]
JSON = {"content-type": "application/json"}
#: what an answer to a caller never holds: a library's name or page, a traceback, a file path
_LEAKS = re.compile(r"pydantic|starlette|bentoml|http|traceback|site-packages|\.py\b|(?:/[\w.-]+){2,}/?", re.I)


@pytest.fixture(scope="module")
def client(service_client):
    return service_client


@pytest.fixture(scope="module")
def customer(demo_workdir):
    return str(pd.read_parquet(demo_workdir / "scored_book.parquet")["customer_id"].iloc[0])


def refused(r, status: int, field: str) -> dict:
    """The answer is ``status`` in the documented shape, its error about ``field``, and leaks nothing."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    payload = r.json()
    assert set(payload) <= {"error", "detail"} and all(isinstance(v, str) for v in payload.values()), payload
    assert payload["error"].startswith(f"{field}:"), payload
    assert not _LEAKS.search(r.text), r.text
    return payload


def nested(levels: int, inner: bytes = b"1") -> bytes:
    return b'{"a": ' * levels + inner + b"}" * levels


@pytest.mark.parametrize("path", BODY_PATHS)
@pytest.mark.parametrize("body", [nested(10_000), b"[" * 10_000 + b"]" * 10_000, b"[" * 10_000,
                                  b'{"customer_id": "x", "order_amount": 1, "features": ' + nested(10_000) + b"}"])
def test_a_document_nested_10000_levels_deep_is_a_400_not_a_500(client, path, body):
    payload = refused(client.post(path, content=body, headers=JSON), 400, "body")
    assert payload["error"] == f"body: nested deeper than {MAX_DEPTH} levels"


def test_depth_is_counted_outside_strings_only_and_up_to_the_limit(client):
    # 64 levels are read (and the unknown field named); 65 are not read at all
    assert refused(client.post("/admin/reload", content=nested(MAX_DEPTH - 1, b"[1]"), headers=JSON), 400, "a")
    refused(client.post("/admin/reload", content=nested(MAX_DEPTH, b"[1]"), headers=JSON), 400, "body")
    # brackets in a string, an escaped quote among them, are the string's: the field is named
    for text in ("[" * 1000, '\\"' + "[{" * 1000 + '\\"'):
        body = b'{"note": "' + text.encode() + b'"}'
        refused(client.post("/admin/reload", content=body, headers=JSON), 400, "note")
    # a string's brackets cannot hide nesting either: ["]", ["]", ... is 100 levels deep
    body = b'["]", ' * 100 + b"1" + b"]" * 100
    refused(client.post("/admin/reload", content=body, headers=JSON), 400, "body")


@pytest.mark.parametrize("path", BODY_PATHS)
def test_multipart_and_form_bodies_are_a_415(client, path):
    multipart = client.post(path, files={"file": ("order.json", b'{"requests": []}', "application/json")})
    assert "multipart/form-data" in refused(multipart, 415, "content-type")["error"]
    form = client.post(path, data={"customer_id": "C000001", "order_amount": "10"})
    assert "x-www-form-urlencoded" in refused(form, 415, "content-type")["error"]


@pytest.mark.parametrize("path", BODY_PATHS)
@pytest.mark.parametrize("content_type", ["text/plain", "text/plain; charset=utf-8", "application/jsonx",
                                          "application/json; charset=latin-1", "", "\u00e9/\u00e9"])
def test_a_body_that_does_not_say_it_is_json_is_a_415(client, path, content_type):
    r = client.post(path, content=b"{}", headers={"content-type": content_type.encode("utf-8")})
    refused(r, 415, "content-type")


def test_a_content_type_given_twice_is_a_415(client):
    r = client.post("/admin/reload", content=b"{}", headers=[("content-type", "application/json"),
                                                               ("content-type", "text/plain")])
    refused(r, 415, "content-type")


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/json;charset=UTF-8",
                                          "Application/JSON", "application/vnd.riskcast+json"])
def test_json_under_its_other_spellings_is_read(client, content_type):
    r = client.post("/admin/reload", content=b"{}", headers={"content-type": content_type})
    assert r.status_code == 200, r.text


def test_a_reload_without_a_body_needs_no_content_type(client):
    r = client.post("/admin/reload")
    assert r.status_code == 200, r.text


def test_a_body_not_in_utf8_is_a_400_not_a_500(client):
    deep = b"[" * 10_000 + b"]" * 10_000
    for body in (deep.decode().encode("utf-16"), b'{"customer_id": "\xff\xfe", "order_amount": 1}'):
        refused(client.post("/score", content=body, headers=JSON), 400, "body")


def test_a_number_of_5001_digits_is_a_400_naming_it(client, customer):
    body = b'{"customer_id": "%s", "order_amount": %s}' % (customer.encode(), b"1" * 5001)
    payload = refused(client.post("/score", content=body, headers=JSON), 400, "body")
    assert payload["error"] == f"body: a number longer than {MAX_NUMBER} characters"
    # at the limit the number is read, and the field it is too large for is named
    body = b'{"customer_id": "%s", "order_amount": %s}' % (customer.encode(), b"1" * MAX_NUMBER)
    refused(client.post("/score", content=body, headers=JSON), 400, "order_amount")
    # a long run of digits in a string is no number: the string's field is named
    body = b'{"customer_id": "%s", "order_amount": 10}' % (b"1" * 5001)
    refused(client.post("/score", content=body, headers=JSON), 400, "customer_id")


@pytest.mark.parametrize("value", ["1.4", True, False, "12", [1.4]])
def test_a_feature_is_a_json_number_not_a_string_or_a_boolean(client, customer, value):
    order = {"customer_id": customer, "order_amount": 10, "features": {"dbt_mean_3m": value}}
    refused(client.post("/score", json=order), 400, "features.dbt_mean_3m")
    batch = client.post("/score_batch", json={"requests": [order]})
    refused(batch, 400, "requests.0.features.dbt_mean_3m")


@pytest.mark.parametrize("field, value", [("order_amount", "25000"), ("order_amount", True),
                                          ("requested_terms_days", True), ("requested_terms_days", "30"),
                                          ("requested_terms_days", 30.5)])
def test_amounts_and_terms_are_numbers_and_terms_an_integer(client, customer, field, value):
    order = {"customer_id": customer, "order_amount": 10, field: value}
    refused(client.post("/score", json=order), 400, field)


def test_integers_and_floats_are_both_numbers(client):
    feats = {"dbt_mean_3m": 2, "dbt_mean_12m": 3.5, "liabilities_to_assets": 0.5, "current_ratio": 1,
             "roa": 0.05, "relationship_months": 0, "revenue": 2_000_000}
    r = client.post("/score", json={"customer_id": "NEW-HOSTILE-1", "order_amount": 10000.0,
                                    "requested_terms_days": 30, "features": feats})
    assert r.status_code == 200, r.text


def test_more_than_10000_orders_are_a_413_before_any_is_read(client):
    # the orders themselves are not valid: the count is refused first, as too large
    r = client.post("/score_batch", json={"requests": [{"customer_id": ""}] * 10_001})
    payload = refused(r, 413, "requests")
    assert payload["error"] == "requests: at most 10000 orders per batch"


def _series(client=None, port: int | None = None) -> list[str]:
    """The series /metrics shows: over HTTP from the running service (``port``), or in process
    from the registry BentoML's metrics write to (its /metrics reads the files the workers of
    ``riskcast serve`` share, which a single process without them does not have)."""
    if port is not None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
    else:
        import prometheus_client

        text = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _random_paths(seed: int, n: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    methods = ("GET", "POST", "PUT", "DELETE", "HEAD")
    return [(methods[i % len(methods)], "/" + "/".join(f"{rng.getrandbits(40):x}" for _ in range(rng.randint(1, 3))))
            for i in range(n)]


def test_unknown_paths_are_a_404_and_do_not_grow_the_metrics(client):
    client.get("/no-such-path")  # the first unknown path adds the shared label's series
    before = _series(client)
    for method, path in _random_paths(20261203, 300):
        r = client.request(method, path, content=b"{}", headers=JSON)
        if method == "HEAD":
            assert r.status_code == 404, path
        else:
            refused(r, 404, "path")
    after = _series(client)
    assert len(after) == len(before)
    assert not [line for line in after if "no-such-path" in line]
    assert [line for line in after if line.startswith("bentoml_service_request_total{") and '"/(unknown)"' in line]


def _call(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_the_running_service_keeps_its_metrics_series_under_300_random_paths(workdir_copy, tmp_path):
    """``riskcast serve`` with its two workers: /metrics over HTTP, as a scraper reads it."""
    from riskcast.serving.procs import start_serving, stop_serving

    log = tmp_path / "serve.log"
    proc, port = start_serving(workdir_copy, log)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-1500:]
            try:
                if _call(port, "GET", "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        customer = str(pd.read_parquet(workdir_copy / "scored_book.parquet")["customer_id"].iloc[0])
        order = json.dumps({"customer_id": customer, "order_amount": 10}).encode()
        assert _call(port, "POST", "/score", order, JSON)[0] == 200
        # each worker's first request adds its own timestamp series: unknown paths until both have
        for _ in range(200):
            _call(port, "GET", "/no-such-path")
            if sum(line.startswith("bentoml_service_last_request_timestamp_seconds") for line in _series(port=port)) >= 2:
                break
        before = _series(port=port)
        for method, path in _random_paths(7, 300):
            status, _ = _call(port, method, path, b"{}", JSON)
            assert status == 404, (method, path)
        after = _series(port=port)
        assert len(after) == len(before), sorted(set(after) ^ set(before))[:10]
        labels = "\n".join(after)
        assert 'endpoint="/score"' in labels and 'endpoint="/(unknown)"' in labels
        # over the wire too: deep nesting and a form are answered in the shape, not with a 500
        status, body = _call(port, "POST", "/score_batch", b"[" * 10_000 + b"]" * 10_000, JSON)
        assert status == 400 and json.loads(body)["error"].startswith("body:"), body
        status, body = _call(port, "POST", "/admin/reload", b"a=1", {"content-type": "application/x-www-form-urlencoded"})
        assert status == 415 and json.loads(body)["error"].startswith("content-type:"), body
    finally:
        stop_serving(workdir_copy, proc)


def test_known_paths_keep_working_and_keep_their_labels(client, customer):
    assert client.post("/score", json={"customer_id": customer, "order_amount": 10}).status_code == 200
    for path in ("/livez", "/healthz", "/readyz", "/docs.json", "/"):
        assert client.get(path).status_code == 200, path
    # every link and asset of the front page is a path the service answers, none is elsewhere
    links = set(re.findall(r'(?:src|href)="([^"]+)"', client.get("/").text))
    assert {"/desk/", "/desk/desk.css", "/docs.json", "/livez", "/readyz", "/metrics"} <= links
    assert all(link.startswith("/") and not link.startswith("//") for link in links), links
    # the desk's queue answers with its sign-in page; /metrics reads files only the workers of
    # `riskcast serve` share (see ``_series``)
    for link in links - {"/desk/", "/metrics"}:
        assert client.get(link).status_code == 200, link
    assert client.get("/desk/", follow_redirects=False).status_code == 303
    assert client.get("/static_content/no-such-file.js").status_code == 404
    assert client.get("/score").status_code == 405  # a known path with the wrong method is no unknown path
    series = "\n".join(_series(client))
    for path in ("/score", "/docs.json", "/"):
        assert f'endpoint="{path}"' in series, path


def test_the_document_lists_the_415_of_each_body_path(client):
    doc = client.get("/docs.json").json()
    for path in BODY_PATHS:
        responses = doc["paths"][path]["post"]["responses"]
        assert responses["415"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/InvalidArgument"}
