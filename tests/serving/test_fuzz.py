"""Fuzzing the service against its own OpenAPI document: no 5xx, no answer outside the schema,
every schema-valid request accepted and every invalid one refused."""

import pytest
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")


@pytest.fixture(scope="module")
def schema(service_client):
    # loaded from the published document and sent through the running service (an app loaded by
    # schemathesis would be started and stopped under the other tests' feet)
    return schemathesis.openapi.from_dict(service_client.get("/docs.json").json())


@pytest.mark.parametrize("path, method, examples", [
    ("/score", "POST", 250), ("/score_batch", "POST", 60), ("/livez", "GET", 5), ("/readyz", "GET", 5),
])
def test_the_service_keeps_its_published_contract(service_client, schema, path, method, examples):
    operation = schema[path][method]

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def check(case):
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        response = service_client.request(kwargs.pop("method"), kwargs.pop("url"), **kwargs)
        case.validate_response(response)

    check()
