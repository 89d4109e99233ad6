"""Fuzzing the service against its own OpenAPI document with every check schemathesis has: no
5xx, no answer outside the schema, every schema-valid request accepted and every invalid one
refused, methods the document does not list answered 405, on every path fuzzed (the scoring
paths, the admin reload, health). Valid and invalid data both, in the coverage and fuzzing phases."""

import io
import time
from datetime import timedelta

import pytest
import requests
import requests.adapters
import urllib3
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")

BASE_URL = "http://testserver"

#: checks whose absence would mean a part of the contract went untested (a rename upstream)
_EXPECTED = {"not_a_server_error", "status_code_conformance", "content_type_conformance",
             "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
             "positive_data_acceptance", "missing_required_header", "unsupported_method", "max_response_time"}


def every_check() -> list:
    """Every check schemathesis registers (its defaults leave ``max_response_time`` out; its
    limit here is schemathesis's default, 10 s)."""
    from schemathesis import checks

    checks.load_all_checks()
    found = [c for c in checks.CHECKS.get_all() if not checks.is_check_class(c)]
    if checks.max_response_time not in found:
        found.append(checks.max_response_time)
    return found


class _InProcess(requests.adapters.BaseAdapter):
    """A requests adapter that hands each request to the service running in this process: what
    schemathesis sends and what its checks send again (a content-type probe's control request)
    reach the same service, and nothing leaves the machine."""

    def __init__(self, client) -> None:
        super().__init__()
        self.client = client

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        started = time.perf_counter()
        answer = self.client.request(request.method, request.url, content=request.body, headers=dict(request.headers))
        headers = urllib3.HTTPHeaderDict()
        for name, value in answer.headers.multi_items():
            if name.lower() != "content-encoding":  # the test client has decoded the body already
                headers.add(name, value)
        raw = urllib3.HTTPResponse(body=io.BytesIO(answer.content), headers=headers, status=answer.status_code,
                                   reason=answer.reason_phrase, preload_content=False, decode_content=False)
        response = requests.adapters.HTTPAdapter().build_response(request, raw)
        response.elapsed = timedelta(seconds=time.perf_counter() - started)
        return response

    def close(self) -> None:
        pass


#: what refuses invalid data: schemathesis's defaults and 413, the document's answer to a batch of
#: more orders than its ``maxItems``
_REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]


@pytest.fixture(scope="module")
def published(service_client):
    # loaded from the published document and sent through the running service (an app loaded by
    # schemathesis would be started and stopped under the other tests' feet)
    from schemathesis.config import SchemathesisConfig

    config = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": _REFUSALS}}})
    return schemathesis.openapi.from_dict(service_client.get("/docs.json").json(), config=config)


@pytest.fixture(scope="module")
def session(service_client):
    with requests.Session() as s:
        s.mount(BASE_URL, _InProcess(service_client))
        yield s


_SETTINGS = dict(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


def test_every_check_is_run():
    names = {c.__name__ for c in every_check()}
    assert _EXPECTED <= names, sorted(_EXPECTED - names)


def _exchange(session, case) -> None:
    case.call_and_validate(base_url=BASE_URL, session=session, checks=every_check())


PATHS = [("/score", "POST", 250), ("/score_batch", "POST", 60), ("/admin/reload", "POST", 25),
         ("/livez", "GET", 5), ("/readyz", "GET", 5)]


@pytest.mark.parametrize("path, method, examples", PATHS)
def test_the_service_keeps_its_published_contract(session, published, path, method, examples):
    """Fuzzing: schema-valid and invalid requests drawn at random (in process the champion alias
    has not moved, so each accepted reload keeps the version)."""
    operation = published[path][method]
    from schemathesis import GenerationMode

    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

    @settings(max_examples=examples, **_SETTINGS)
    @given(case=strategy)
    def check(case):
        _exchange(session, case)

    check()


@pytest.mark.parametrize("path, method", [(p, m) for p, m, _ in PATHS])
def test_the_service_answers_every_coverage_case_as_published(session, published, path, method):
    """The coverage phase: boundary values, each required part missing, wrong types, other
    content types and the methods the document does not list (405 with ``Allow``)."""
    from schemathesis import GenerationMode

    operation = published[path][method]
    config = published.config.generation_for(operation=operation, phase="coverage")
    cases = list(published.iter_coverage_cases(operation, generation_modes=list(GenerationMode),
                                               generation_config=config))
    assert cases
    for case in cases:
        _exchange(session, case)
