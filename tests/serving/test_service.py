"""The BentoML service in process: the contract's fields, and 4xx naming the field for bad input."""

import json

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def client(service_client):
    return service_client


@pytest.fixture(scope="module")
def customer(demo_workdir):
    return str(pd.read_parquet(demo_workdir / "scored_book.parquet")["customer_id"].iloc[0])


CONTRACT = {"customer_id", "pd_12m", "score", "grade", "decision", "credit_limit", "recommended_terms_days",
            "reasons", "model", "fallback", "fallback_reason", "request_id"}


def test_score_answers_with_the_contract_fields(client, customer):
    r = client.post("/score", json={"customer_id": customer, "order_amount": 25000, "requested_terms_days": 60})
    assert r.status_code == 200, r.text
    body = r.json()
    assert CONTRACT <= set(body)
    assert body["customer_id"] == customer and 0 < body["pd_12m"] < 1
    assert body["recommended_terms_days"] <= 60
    assert set(body["model"]) == {"name", "version", "kind"}
    for reason in body["reasons"]:
        assert {"feature", "text", "impact"} <= set(reason)


def test_the_answer_over_http_is_the_scoring_cores_decision(client, core, customer):
    """The gate answers /score itself: field for field what the core decides for the same order."""
    from riskcast.serving.core import Order

    held = core.store.get(customer)["dbt_mean_3m"]  # a book customer may supply only what the book lacks
    value = 12.5 if held != held else held
    r = client.post("/score", json={"customer_id": customer, "order_amount": 25000, "requested_terms_days": 60,
                                    "request_id": "same-order-1", "features": {"dbt_mean_3m": value}})
    assert r.status_code == 200, r.text
    expected = core.score_order(Order(customer, 25000.0, 60, {"dbt_mean_3m": value}, "same-order-1"))
    assert r.json() == json.loads(json.dumps(expected))
    assert r.json()["reasons"]


def test_a_reload_swaps_the_champion_in_and_orders_keep_being_answered(client, customer):
    before = client.post("/score", json={"customer_id": customer, "order_amount": 1000}).json()
    r = client.post("/admin/reload")
    assert r.status_code == 200, r.text
    assert r.json()["version"] == r.json()["previous_version"] == before["model"]["version"]
    after = client.post("/score", json={"customer_id": customer, "order_amount": 1000}).json()
    assert after["pd_12m"] == before["pd_12m"] and after["model"] == before["model"]


@pytest.mark.parametrize("body", [None, b"{}", b" { } "])
def test_a_reload_takes_no_body_or_an_empty_object(client, body):
    r = client.post("/admin/reload", content=body, headers={"content-type": "application/json"} if body else {})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"model", "version", "previous_version"}


@pytest.mark.parametrize("body, field", [
    (b"[null, null]", "body"), (b"null", "body"), (b"[]", "body"), (b'"reload"', "body"), (b"0", "body"),
    (b"not json", "body"), (b'{"version": "2"}', "version"), (b" ", "body"), (b"\n", "body"),
])
def test_a_reload_with_any_other_body_is_a_400_in_the_documented_shape(client, body, field):
    r = client.post("/admin/reload", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    payload = r.json()
    assert set(payload) <= {"error", "detail"} and all(isinstance(v, str) for v in payload.values())
    assert payload["error"].startswith(f"{field}:")


@pytest.mark.parametrize("path, body", [("/admin/reload", b"{}"), ("/score_batch", b'{"requests": []}'),
                                        ("/score", b'{"customer_id": "C000001", "order_amount": 10}')])
@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data", "application/x-www-form-urlencoded", None])
def test_a_json_body_under_another_content_type_or_none_is_a_415_not_a_500(client, path, body, content_type):
    """A page may send text/plain, a form or no type across origins without asking first: only
    a body that says it is JSON is read."""
    r = client.post(path, content=body, headers={"content-type": content_type} if content_type else {})
    assert r.status_code == 415, r.text
    assert r.headers["content-type"] == "application/json"
    assert set(r.json()) <= {"error", "detail"} and r.json()["error"].startswith("content-type:")


def test_the_document_says_what_a_reload_takes_and_answers(client):
    op = client.get("/docs.json").json()["paths"]["/admin/reload"]["post"]
    assert op["requestBody"]["required"] is False
    assert op["requestBody"]["content"]["application/json"]["schema"]["additionalProperties"] is False
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(ok["properties"]) == {"model", "version", "previous_version"} and set(ok["required"]) == {"model", "version"}
    for code in ("400", "401", "503"):
        assert op["responses"][code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/InvalidArgument"}


def test_readyz_says_the_worker_decides_with_the_version_the_service_serves(client):
    body = client.get("/readyz").json()
    assert body["served"] == {"version": body["model"]["version"], "in_sync": True, "error": None}


@pytest.mark.parametrize("payload, field", [
    ({"customer_id": "C000001"}, "order_amount"),
    ({"customer_id": "C000001", "order_amount": "25000"}, "order_amount"),
    ({"customer_id": "C000001", "order_amount": -5}, "order_amount"),
    ({"order_amount": 10}, "customer_id"),
    ({"customer_id": "C000001", "order_amount": 10, "features": {"dbt_mean_3m": -1}}, "dbt_mean_3m"),
    ({"customer_id": "C000001", "order_amount": 10, "colour": "red"}, "colour"),
    # a feature is a JSON number: neither true (lax validation's 1.0) nor a numeric string
    ({"customer_id": "C000001", "order_amount": 10, "features": {"dbt_mean_3m": True}}, "dbt_mean_3m"),
    ({"customer_id": "C000001", "order_amount": 10, "features": {"dbt_mean_3m": "12.5"}}, "dbt_mean_3m"),
])
def test_malformed_requests_get_a_400_naming_the_field(client, payload, field):
    r = client.post("/score", json=payload)
    assert r.status_code == 400, r.text
    assert field in r.text


def test_nan_is_refused(client, customer):
    body = '{"customer_id": "%s", "order_amount": NaN}' % customer
    r = client.post("/score", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "order_amount" in r.text


def test_unknown_customer_is_a_404_naming_customer_id(client):
    r = client.post("/score", json={"customer_id": "no-such-customer", "order_amount": 10})
    assert r.status_code == 404 and "customer_id" in r.text


def test_new_customer_with_features_is_scored(client):
    feats = {"dbt_mean_3m": 2, "dbt_mean_12m": 3, "liabilities_to_assets": 0.5, "current_ratio": 1.5,
             "roa": 0.05, "relationship_months": 0, "revenue": 2_000_000}
    r = client.post("/score", json={"customer_id": "NEW-1", "order_amount": 10000, "features": feats})
    assert r.status_code == 200, r.text
    assert r.json()["credit_limit"] <= 5000  # a new customer starts at no more than half its first order


def test_score_batch(client, customer):
    reqs = [{"customer_id": customer, "order_amount": a} for a in (100, 1000, 10000)]
    r = client.post("/score_batch", json={"requests": reqs})
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out) == 3 and len({o["pd_12m"] for o in out}) == 1


def test_openapi_lists_every_field_with_limits(client):
    doc = client.get("/docs.json").json()
    text = json.dumps(doc)
    from riskcast.features.registry import default_registry

    for name in ["customer_id", "order_amount", "requested_terms_days", "features", *default_registry().names]:
        assert f'"{name}"' in text, name
    # amounts > 0 in OpenAPI 3.0's spelling, bodies required, null spelled nullable
    amount = doc["components"]["schemas"]["ScoreRequestIODescriptor"]["properties"]["order_amount"]
    assert amount["minimum"] == 0 and amount["exclusiveMinimum"] is True
    assert doc["paths"]["/score"]["post"]["requestBody"]["required"] is True
    assert doc["components"]["schemas"]["ScoreResponse"]["properties"]["pd_12m"]["nullable"] is True


def test_health(client):
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_an_oversized_body_is_refused_before_parsing(client):
    r = client.post("/score", content=b"{" + b" " * 1_100_000 + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"].startswith("body:")


def test_with_an_api_key_set_scoring_needs_it_and_health_does_not(monkeypatch):
    from starlette.testclient import TestClient

    from riskcast.serving.gate import RequestGate

    async def app(scope, receive, send):  # stands for the service behind the gate
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    monkeypatch.setenv("RISKCAST_API_KEY", "s3cret-key")
    c = TestClient(RequestGate(app, validators={}))  # no lifespan: the stand-in has none
    assert c.post("/score", json={}).status_code == 401
    assert c.post("/score", json={}, headers={"x-api-key": "s3cret-kez"}).status_code == 401
    assert "X-API-Key" in c.post("/admin/reload").json()["error"]
    assert c.post("/score", json={}, headers={"x-api-key": "s3cret-key"}).status_code == 200
    assert c.get("/livez").status_code == 200
    monkeypatch.delenv("RISKCAST_API_KEY")
    assert TestClient(RequestGate(app, validators={})).post("/score", json={}).status_code == 200


def test_a_gate_told_a_body_may_be_left_out_on_a_path_it_does_not_validate_refuses_to_start():
    from riskcast.serving.gate import RequestGate

    with pytest.raises(ValueError, match="optional_body: /admin/reload"):
        RequestGate(lambda *a: None, validators={}, optional_body=("/admin/reload",))
