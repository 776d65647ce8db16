"""The Glider emulator's v2 ("integrator") API, over real HTTP with urllib3 and http.client."""

from __future__ import annotations

import hashlib
import re
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.client import HTTPConnection
from typing import Any
from urllib.parse import quote

import pytest
import urllib3
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from local.fixtures.glider_emulator import Fault, GliderEmulator

API_KEY = "test-key-s3cr3t-0123456789"  # accepted on both versions
V2_KEY = "gldr_sk_v2only-s3cr3t"
V1_KEY = "legacy-v1only-s3cr3t"
PORTFOLIO = "port_abc123"
NO_SCHEDULE = "port_noschedule"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
OPERATION_ID = re.compile(r"^rebalance:(?P<portfolio>.+):[0-9a-f]{16}%2F[0-9]+$")
V1_TRIGGER_BODY = b'{"skipScheduleValidation": true}'

MakeEmulator = Callable[..., GliderEmulator]


@pytest.fixture
def make_emulator() -> Iterator[MakeEmulator]:
    started: list[GliderEmulator] = []

    def make(**kwargs: Any) -> GliderEmulator:
        emulator = GliderEmulator([API_KEY], **kwargs)
        emulator.add_portfolio(PORTFOLIO)
        emulator.add_portfolio(NO_SCHEDULE, has_schedule=False)
        started.append(emulator.start())
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(make_emulator: MakeEmulator) -> GliderEmulator:
    return make_emulator()


@pytest.fixture
def http() -> Iterator[urllib3.PoolManager]:
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2.0, read=5.0))
    yield pool
    pool.clear()


def v2_path(*segments: str) -> str:
    return "/v2/" + "/".join(quote(segment, safe="") for segment in segments)


def call(
    http: urllib3.PoolManager,
    emulator: GliderEmulator,
    method: str,
    path: str,
    *,
    key: str | None = API_KEY,
    body: bytes | None = None,
    **kwargs: Any,
) -> urllib3.BaseHTTPResponse:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["x-api-key"] = key
    return http.request(method, emulator.base_url + path, body=body, headers=headers, **kwargs)


def trigger(
    http: urllib3.PoolManager,
    emulator: GliderEmulator,
    portfolio_id: str = PORTFOLIO,
    *,
    key: str | None = API_KEY,
    body: bytes = b"",
    method: str = "POST",
    **kwargs: Any,
) -> urllib3.BaseHTTPResponse:
    path = v2_path("portfolios", portfolio_id, "rebalance")
    return call(http, emulator, method, path, key=key, body=body, **kwargs)


def operation(
    http: urllib3.PoolManager,
    emulator: GliderEmulator,
    operation_id: str,
    portfolio_id: str = PORTFOLIO,
    *,
    key: str | None = API_KEY,
) -> urllib3.BaseHTTPResponse:
    path = v2_path("portfolios", portfolio_id, "operations", operation_id)
    return call(http, emulator, "GET", path, key=key)


def portfolio(
    http: urllib3.PoolManager,
    emulator: GliderEmulator,
    portfolio_id: str = PORTFOLIO,
    *,
    key: str | None = API_KEY,
) -> urllib3.BaseHTTPResponse:
    return call(http, emulator, "GET", v2_path("portfolios", portfolio_id), key=key)


def v1_trigger(
    http: urllib3.PoolManager,
    emulator: GliderEmulator,
    portfolio_id: str = PORTFOLIO,
    *,
    key: str = API_KEY,
) -> urllib3.BaseHTTPResponse:
    segment = quote(portfolio_id, safe="")
    return http.request(
        "POST",
        f"{emulator.base_url}/v1/portfolio/{segment}/rebalance/schedule/trigger",
        body=V1_TRIGGER_BODY,
        headers={"X-API-KEY": key, "Content-Type": "application/json"},
    )


def v1_status(
    http: urllib3.PoolManager, emulator: GliderEmulator, path: str = ""
) -> urllib3.BaseHTTPResponse:
    return http.request(
        "GET",
        f"{emulator.base_url}/v1/portfolio/{PORTFOLIO}/rebalance/status{path}",
        headers={"X-API-KEY": API_KEY},
    )


class _AnyRetry:
    """Equal to any positive whole number of seconds (for a details dict)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, int) and other >= 1

    def __hash__(self) -> int:
        return 0


ANY_RETRY: Any = _AnyRetry()


def epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def assert_v2_headers(response: urllib3.BaseHTTPResponse) -> None:
    assert re.fullmatch(r"corr_[0-9a-f]+", response.headers["X-Correlation-Id"])
    assert re.fullmatch(r"req_[0-9a-f]+", response.headers["X-Request-Id"])
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert response.headers[name].isdigit(), name


def assert_v2_error(
    response: urllib3.BaseHTTPResponse,
    status: int,
    code: str,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    assert response.status == status
    assert response.headers["Content-Type"] == "application/json"
    assert_v2_headers(response)
    payload: dict[str, Any] = response.json()
    assert set(payload) == {"success", "error"}  # no correlationId/requestId in the body
    assert payload["success"] is False
    assert set(payload["error"]) == {"code", "message", "details"}
    assert payload["error"]["code"] == code
    assert isinstance(payload["error"]["message"], str)
    assert payload["error"]["details"] == (details or {})
    for key in (API_KEY, V2_KEY, V1_KEY):
        assert key not in response.data.decode(errors="replace")
    return payload


def accepted(response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    """The data of a 202 trigger answer, checked against the contract."""
    assert response.status == 202, response.data
    assert response.headers["Content-Type"] == "application/json"
    assert_v2_headers(response)
    payload: dict[str, Any] = response.json()
    assert set(payload) == {"success", "data"}
    assert payload["success"] is True
    data: dict[str, Any] = payload["data"]
    assert set(data) == {"operationId", "submittedAt"}
    assert OPERATION_ID.match(data["operationId"])
    assert TIMESTAMP.match(data["submittedAt"])
    return data


def operation_data(response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    assert response.status == 200, response.data
    assert_v2_headers(response)
    payload: dict[str, Any] = response.json()
    assert set(payload) == {"success", "data"}
    data: dict[str, Any] = payload["data"]
    assert set(data) == {
        "operationId",
        "portfolioId",
        "kind",
        "state",
        "createdAt",
        "updatedAt",
        "finishedAt",
        "error",
    }
    assert data["kind"] == "rebalance"
    return data


def raw_get(emulator: GliderEmulator, target: str, key: str = API_KEY) -> tuple[int, bytes]:
    """A GET of this exact request target (no client-side encoding at all)."""
    host, port = emulator.base_url.removeprefix("http://").split(":")
    conn = HTTPConnection(host, int(port), timeout=5)
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        conn.putheader("x-api-key", key)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- the trigger


def test_trigger_answers_202_with_an_operation_and_records_a_shared_rebalance(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    before = time.time()
    response = trigger(http, emulator)
    data = accepted(response)

    match = OPERATION_ID.match(data["operationId"])
    assert match is not None
    assert match["portfolio"] == PORTFOLIO
    assert ":" in data["operationId"]
    assert "%2F" in data["operationId"]
    [rebalance] = emulator.rebalances
    assert rebalance.api_version == "v2"
    assert rebalance.operation_id == data["operationId"]
    assert re.fullmatch(r"rebal_[0-9a-f]+", rebalance.rebalance_id)
    assert rebalance.portfolio_id == PORTFOLIO
    assert rebalance.skip_schedule_validation is False
    assert rebalance.request_id == response.headers["X-Request-Id"]
    assert rebalance.correlation_id == response.headers["X-Correlation-Id"]
    assert before - 0.001 <= epoch(data["submittedAt"]) <= time.time()
    assert abs(epoch(data["submittedAt"]) - rebalance.started_at) < 0.001
    assert emulator.rebalances_for(PORTFOLIO) == [rebalance]
    [request] = emulator.trigger_requests
    assert request.path == f"/v2/portfolios/{PORTFOLIO}/rebalance"
    assert request.portfolio_id == PORTFOLIO
    assert request.status == 202
    assert API_KEY not in repr(request)


def test_operation_ids_are_unique_and_numbered(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    first = accepted(trigger(http, emulator))["operationId"]
    second = accepted(trigger(http, emulator))["operationId"]
    third = accepted(trigger(http, emulator, NO_SCHEDULE))["operationId"]
    assert len({first, second, third}) == 3
    assert [op.rsplit("%2F", 1)[1] for op in (first, second, third)] == ["1", "2", "3"]
    assert [r.operation_id for r in emulator.rebalances] == [first, second, third]


@pytest.mark.parametrize("body", [b"", b"  ", b"{}", b'{"skipScheduleValidation": false}'])
def test_any_json_object_or_no_body_is_accepted_and_ignored(
    emulator: GliderEmulator, http: urllib3.PoolManager, body: bytes
) -> None:
    accepted(trigger(http, emulator, body=body))
    assert len(emulator.rebalances) == 1


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"[]", b'"x"', b"{"])
def test_a_body_that_is_not_a_json_object_is_400_api_002(
    emulator: GliderEmulator, http: urllib3.PoolManager, body: bytes
) -> None:
    assert_v2_error(trigger(http, emulator, body=body), 400, "API_002")
    assert emulator.rebalances == []


def test_a_portfolio_without_a_schedule_is_triggered_on_v2(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    accepted(trigger(http, emulator, NO_SCHEDULE))
    [rebalance] = emulator.rebalances
    assert (rebalance.portfolio_id, rebalance.skip_schedule_validation) == (NO_SCHEDULE, False)


def test_unknown_portfolio_is_404_api_200(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    assert_v2_error(trigger(http, emulator, "port_unknown"), 404, "API_200")
    assert_v2_error(portfolio(http, emulator, "port_unknown"), 404, "API_200")
    assert_v2_error(operation(http, emulator, "rebalance:x:y", "port_unknown"), 404, "API_200")
    assert emulator.rebalances == []


def test_an_odd_portfolio_id_is_decoded_once(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    odd_id = "port/1 ä:%2F?#"
    emulator.add_portfolio(odd_id)
    data = accepted(trigger(http, emulator, odd_id))
    assert data["operationId"].startswith(f"rebalance:{odd_id}:")
    assert emulator.requests[0].portfolio_id == odd_id
    assert emulator.requests[0].path.startswith("/v2/portfolios/port%2F1%20")
    followed = operation_data(operation(http, emulator, data["operationId"], odd_id))
    assert followed["portfolioId"] == odd_id
    assert portfolio(http, emulator, odd_id).json()["data"]["portfolioId"] == odd_id


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", v2_path("portfolios", PORTFOLIO, "rebalance"), "POST"),
        ("PUT", v2_path("portfolios", PORTFOLIO, "rebalance"), "POST"),
        ("POST", v2_path("portfolios", PORTFOLIO), "GET"),
        ("DELETE", v2_path("portfolios", PORTFOLIO, "operations", "x"), "GET"),
        ("POST", "/v2/whoami", "GET"),
        ("POST", "/v2/scopes", "GET"),
    ],
)
def test_other_methods_are_405_api_003_with_allow(
    emulator: GliderEmulator, http: urllib3.PoolManager, method: str, path: str, allow: str
) -> None:
    response = call(http, emulator, method, path)
    assert_v2_error(response, 405, "API_003")
    assert response.headers["Allow"] == allow
    assert emulator.rebalances == []


@pytest.mark.parametrize(
    "path",
    ["/v2", "/v2/", "/v2/portfolios", "/v2/portfolios/x/rebalance/", "/v2/portfolios//rebalance"],
)
def test_other_v2_paths_get_a_routers_404_not_the_v2_envelope(
    emulator: GliderEmulator, http: urllib3.PoolManager, path: str
) -> None:
    response = call(http, emulator, "POST", path)
    assert response.status == 404
    assert response.json() == {
        "message": f"Route POST:{path} not found",
        "error": "Not Found",
        "statusCode": 404,
    }
    assert emulator.requests[0].portfolio_id is None


def test_the_trigger_can_be_served_under_the_docs_other_name(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    # One page of Glider's docs names the trigger POST /v2/portfolios/:id/trigger.
    emulator.set_v2_trigger_route("trigger")
    missing = trigger(http, emulator)  # .../rebalance: no such route now
    assert (missing.status, missing.json()["error"]) == (404, "Not Found")
    assert emulator.rebalances == []
    accepted(call(http, emulator, "POST", v2_path("portfolios", PORTFOLIO, "trigger")))
    assert [r.api_version for r in emulator.rebalances] == ["v2"]
    assert portfolio(http, emulator).status == 200  # the reads are where they were
    emulator.set_v2_trigger_route("rebalance")
    accepted(trigger(http, emulator))
    with pytest.raises(ValueError, match="rebalance"):
        emulator.set_v2_trigger_route("start")  # type: ignore[arg-type]


def test_an_invalid_content_length_is_400_in_the_v2_envelope(emulator: GliderEmulator) -> None:
    host, port = emulator.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=2) as conn:
        conn.sendall(
            f"POST /v2/portfolios/{PORTFOLIO}/rebalance HTTP/1.1\r\nHost: x\r\n"
            f"x-api-key: {API_KEY}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".encode()
        )
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"X-Correlation-Id: corr_" in head
    assert b'"success":false' in body
    assert b"correlationId" not in body
    assert emulator.rebalances == []


# --------------------------------------------------------------------------- the in-flight collapse


def test_a_repeat_while_in_flight_collapses_onto_the_same_operation(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.set_workflow_seconds(3600)
    first = accepted(trigger(http, emulator))
    time.sleep(0.01)  # a new submittedAt would differ
    second_response = trigger(http, emulator)
    second = accepted(second_response)
    third = accepted(trigger(http, emulator))

    assert second == first
    assert third == first
    assert len(emulator.rebalances) == 1
    assert emulator.collapsed_triggers() == 2
    assert len(emulator.trigger_requests) == 3
    # A new request with its own ids, answering the old rebalance.
    assert second_response.headers["X-Request-Id"] != emulator.rebalances[0].request_id
    # Another portfolio is not in flight.
    accepted(trigger(http, emulator, NO_SCHEDULE))
    assert len(emulator.rebalances) == 2


def test_a_repeat_after_the_rebalance_is_final_starts_a_new_one(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.set_workflow_seconds(0.2)
    first = accepted(trigger(http, emulator))
    time.sleep(0.25)
    second = accepted(trigger(http, emulator))

    assert second["operationId"] != first["operationId"]
    assert second["submittedAt"] != first["submittedAt"]
    assert len(emulator.rebalances) == 2
    assert emulator.collapsed_triggers() == 0


@pytest.mark.parametrize("state", ["failed", "cancelled"])
def test_a_failed_or_cancelled_rebalance_is_final_for_the_collapse(
    emulator: GliderEmulator, http: urllib3.PoolManager, state: str
) -> None:
    emulator.set_workflow_seconds(0.2)
    emulator.fail_next_rebalance(PORTFOLIO, "boom", state=state)  # type: ignore[arg-type]
    first = accepted(trigger(http, emulator))["operationId"]
    time.sleep(0.25)
    assert operation_data(operation(http, emulator, first))["state"] == state
    assert accepted(trigger(http, emulator))["operationId"] != first
    assert emulator.collapsed_triggers() == 0


def test_a_v2_trigger_collapses_onto_a_v1_rebalance_in_flight(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.set_workflow_seconds(3600)
    assert v1_trigger(http, emulator).status == 200
    [rebalance] = emulator.rebalances

    data = accepted(trigger(http, emulator))

    assert data["operationId"] == rebalance.operation_id
    assert epoch(data["submittedAt"]) == pytest.approx(rebalance.started_at, abs=0.001)
    assert emulator.collapsed_triggers() == 1
    # v1 has no such protection: its repeat starts a second rebalance.
    assert v1_trigger(http, emulator).status == 200
    assert len(emulator.rebalances) == 2
    assert accepted(trigger(http, emulator))["operationId"] == emulator.rebalances[1].operation_id


# --------------------------------------------------------------------------- cooldown, rate limit


def test_cooldown_is_429_api_004_with_retry_after_and_shared_with_v1(
    make_emulator: MakeEmulator, http: urllib3.PoolManager
) -> None:
    emulator = make_emulator(cooldown_seconds=30)
    accepted(trigger(http, emulator))

    response = trigger(http, emulator)
    payload = assert_v2_error(response, 429, "API_004", {"retryAfter": ANY_RETRY})
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 30
    assert payload["error"]["details"] == {"retryAfter": retry_after}
    assert f"Try again in {retry_after} seconds" in payload["error"]["message"]
    # The same per-portfolio cooldown on v1, with v1's 429 body.
    v1 = v1_trigger(http, emulator)
    assert v1.status == 429
    assert set(v1.json()) == {"error", "message", "retryAfter", "correlationId", "requestId"}
    # A v1 trigger starts it for v2 too.
    assert v1_trigger(http, emulator, NO_SCHEDULE).status == 200
    assert trigger(http, emulator, NO_SCHEDULE).status == 429
    assert len(emulator.rebalances) == 2


def test_the_collapse_comes_before_the_cooldown(
    make_emulator: MakeEmulator, http: urllib3.PoolManager
) -> None:
    emulator = make_emulator(cooldown_seconds=30)
    emulator.set_workflow_seconds(3600)
    first = accepted(trigger(http, emulator))
    assert accepted(trigger(http, emulator)) == first
    assert emulator.collapsed_triggers() == 1


def test_the_global_rate_limit_is_429_api_004_on_every_v2_route(
    make_emulator: MakeEmulator, http: urllib3.PoolManager
) -> None:
    emulator = make_emulator(rate_limit_per_second=0.5)  # a burst of 1, then one every 2 s
    accepted(trigger(http, emulator))
    for response in (
        trigger(http, emulator, NO_SCHEDULE),
        portfolio(http, emulator),
        call(http, emulator, "GET", "/v2/whoami"),
        call(http, emulator, "GET", "/v2/scopes", key=None),
    ):
        assert_v2_error(response, 429, "API_004", {"retryAfter": ANY_RETRY})
        assert 1 <= int(response.headers["Retry-After"]) <= 2
        assert response.headers["X-RateLimit-Remaining"] == "0"
    assert len(emulator.rebalances) == 1


# --------------------------------------------------------------------------- keys and scopes


def test_missing_and_invalid_keys_are_401(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    for response in (trigger(http, emulator, key=None), portfolio(http, emulator, key=None)):
        payload = assert_v2_error(response, 401, "API_101")
        assert payload["error"]["message"] == "API key missing"
    for response in (
        trigger(http, emulator, key="wrong-key"),
        portfolio(http, emulator, key="wrong-key"),
        call(http, emulator, "GET", "/v2/whoami", key="wrong-key"),
    ):
        payload = assert_v2_error(response, 401, "API_102")
        assert payload["error"]["message"] == "Invalid API key"
        assert b"wrong-key" not in response.data
    assert emulator.rebalances == []


def test_the_key_header_name_is_case_insensitive(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    url = emulator.base_url + v2_path("portfolios", PORTFOLIO, "rebalance")
    accepted(http.request("POST", url, headers={"X-API-KEY": API_KEY}))


def test_a_key_without_the_write_scope_is_403_naming_it_and_keeps_the_faults(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.add_v2_key(V2_KEY, scopes=("portfolios:read",))
    emulator.script(PORTFOLIO, Fault.error(500, "API_000", "boom"))

    payload = assert_v2_error(
        trigger(http, emulator, key=V2_KEY),
        403,
        "API_104",
        {"requiredScope": "portfolios:write"},
    )

    assert payload["error"]["message"] == (
        "Permission denied: the API key lacks the portfolios:write scope"
    )
    assert emulator.rebalances == []
    assert portfolio(http, emulator, key=V2_KEY).status == 200  # it can read
    assert_v2_error(trigger(http, emulator), 500, "API_000")  # the fault waited


def test_a_key_without_the_read_scope_is_403_on_the_reads(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.add_v2_key(V2_KEY, scopes=("portfolios:write",))
    operation_id = accepted(trigger(http, emulator, key=V2_KEY))["operationId"]
    for response in (
        portfolio(http, emulator, key=V2_KEY),
        operation(http, emulator, operation_id, key=V2_KEY),
    ):
        payload = assert_v2_error(response, 403, "API_104", {"requiredScope": "portfolios:read"})
        assert "portfolios:read" in payload["error"]["message"]


def test_a_v2_only_key_works_on_v2_and_is_refused_on_v1(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.add_v2_key(
        V2_KEY, tenant_name="Acme", tenant_email="ops@acme.invalid", scopes=["portfolios:write"]
    )
    accepted(trigger(http, emulator, key=V2_KEY))
    v1 = v1_trigger(http, emulator, NO_SCHEDULE, key=V2_KEY)
    assert v1.status == 401
    assert v1.json()["error"]["code"] == "API_102"
    assert len(emulator.rebalances) == 1

    whoami = call(http, emulator, "GET", "/v2/whoami", key=V2_KEY)
    assert whoami.json()["data"] == {
        "tenantName": "Acme",
        "tenantEmail": "ops@acme.invalid",
        "apiKeyId": "key_" + hashlib.sha256(V2_KEY.encode()).hexdigest()[:12],
        "scopes": ["portfolios:write"],
    }
    # Adding it again replaces its scopes.
    emulator.add_v2_key(V2_KEY, scopes=("portfolios:read",))
    assert trigger(http, emulator, NO_SCHEDULE, key=V2_KEY).status == 403


def test_a_v1_only_key_works_on_v1_and_is_refused_on_v2(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.add_v1_key(V1_KEY)
    assert v1_trigger(http, emulator, key=V1_KEY).status == 200
    [rebalance] = emulator.rebalances

    assert_v2_error(trigger(http, emulator, NO_SCHEDULE, key=V1_KEY), 401, "API_102")
    assert_v2_error(portfolio(http, emulator, key=V1_KEY), 401, "API_102")
    assert_v2_error(operation(http, emulator, rebalance.operation_id, key=V1_KEY), 401, "API_102")
    whoami = call(http, emulator, "GET", "/v2/whoami", key=V1_KEY)
    payload = assert_v2_error(whoami, 403, "API_104")
    assert "legacy static key has no tenant identity" in payload["error"]["message"]
    assert len(emulator.rebalances) == 1


def test_rotating_the_shared_keys_keeps_the_version_specific_ones(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.add_v2_key(V2_KEY)
    emulator.add_v1_key(V1_KEY)
    emulator.set_api_keys(["rotated-key"])
    assert_v2_error(trigger(http, emulator), 401, "API_102")
    accepted(trigger(http, emulator, key="rotated-key"))
    accepted(trigger(http, emulator, NO_SCHEDULE, key=V2_KEY))
    assert v1_trigger(http, emulator, "port_unknown", key=V1_KEY).status == 404  # key accepted


def test_whoami_shows_the_shared_keys_default_identity(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    response = call(http, emulator, "GET", "/v2/whoami")
    assert response.status == 200
    assert_v2_headers(response)
    payload = response.json()
    assert set(payload) == {"success", "data"}
    assert payload["data"] == {
        "tenantName": "Emulated tenant",
        "tenantEmail": "tenant@example.invalid",
        "apiKeyId": "key_" + hashlib.sha256(API_KEY.encode()).hexdigest()[:12],
        "scopes": ["portfolios:read", "portfolios:write"],
    }
    assert API_KEY not in response.data.decode()
    assert_v2_error(call(http, emulator, "GET", "/v2/whoami", key=None), 401, "API_101")


def test_scopes_need_no_key_and_list_the_tiers(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    response = call(http, emulator, "GET", "/v2/scopes", key=None)
    assert response.status == 200
    assert_v2_headers(response)
    scopes = response.json()["data"]["scopes"]
    by_name = {scope["name"]: scope for scope in scopes}
    assert by_name["portfolios:read"]["tier"] == "default"
    assert by_name["portfolios:write"] == {
        "name": "portfolios:write",
        "tier": "standard",
        "description": "pause, resume, and trigger rebalances",
    }
    assert len(scopes) > 2
    assert all(set(scope) == {"name", "tier", "description"} for scope in scopes)
    assert {scope["tier"] for scope in scopes} == {"default", "standard", "restricted"}


# --------------------------------------------------------------------------- following an operation


def test_the_percent_encoded_operation_id_finds_the_operation_and_the_raw_one_does_not(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    operation_id = accepted(trigger(http, emulator))["operationId"]
    base = f"/v2/portfolios/{PORTFOLIO}/operations/"

    status, body = raw_get(emulator, base + quote(operation_id, safe=""))
    assert status == 200, body
    assert b'"operationId":"' + operation_id.encode() + b'"' in body
    # ':' may stay as it is; '%' must not.
    assert raw_get(emulator, base + operation_id.replace("%", "%25"))[0] == 200
    status, body = raw_get(emulator, base + operation_id)  # "%2F" reads as "/": another id
    assert status == 404
    assert b'"code":"API_006"' in body


def test_an_operation_runs_accepted_running_completed(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.set_workflow_seconds(3.0)  # accepted for 0.3 s, then running
    submitted = accepted(trigger(http, emulator))
    operation_id = submitted["operationId"]

    first = operation_data(operation(http, emulator, operation_id))
    time.sleep(0.4)
    second = operation_data(operation(http, emulator, operation_id))
    emulator.set_workflow_seconds(0.35)  # its time is now up
    third = operation_data(operation(http, emulator, operation_id))

    assert first == {
        "operationId": operation_id,
        "portfolioId": PORTFOLIO,
        "kind": "rebalance",
        "state": "accepted",
        "createdAt": submitted["submittedAt"],
        "updatedAt": submitted["submittedAt"],
        "finishedAt": None,
        "error": None,
    }
    assert second["state"] == "running"
    assert epoch(second["updatedAt"]) == pytest.approx(epoch(first["createdAt"]) + 0.3, abs=0.002)
    assert second["finishedAt"] is None
    assert third["state"] == "completed"
    assert third["finishedAt"] == third["updatedAt"]
    assert epoch(third["finishedAt"]) == pytest.approx(epoch(first["createdAt"]) + 0.35, abs=0.002)
    assert third["error"] is None


def test_an_unknown_operation_is_404_api_006(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    operation_id = accepted(trigger(http, emulator))["operationId"]
    assert_v2_error(operation(http, emulator, operation_id + "0"), 404, "API_006")
    # Another portfolio's operation is not found under this one.
    assert_v2_error(operation(http, emulator, operation_id, NO_SCHEDULE), 404, "API_006")


@pytest.mark.parametrize(
    ("state", "code"), [("failed", "REBALANCE_FAILED"), ("cancelled", "REBALANCE_CANCELLED")]
)
def test_a_scripted_failure_or_cancellation_shows_on_both_versions(
    emulator: GliderEmulator, http: urllib3.PoolManager, state: str, code: str
) -> None:
    emulator.fail_next_rebalance(PORTFOLIO, "slippage too high", state=state)  # type: ignore[arg-type]
    operation_id = accepted(trigger(http, emulator))["operationId"]
    [rebalance] = emulator.rebalances

    data = operation_data(operation(http, emulator, operation_id))
    v1 = v1_status(http, emulator, f"/{rebalance.rebalance_id}").json()["data"]

    assert data["state"] == state
    assert data["error"] == {"code": code, "message": "slippage too high"}
    assert data["finishedAt"] == data["createdAt"]  # no workflow time: over at once
    assert v1["status"] == state
    assert v1["error"] == {"message": "slippage too high"}
    if state == "cancelled":
        assert v1["result"] is None
    else:
        assert v1["result"]["status"] == "failed"
    # Only the next rebalance.
    next_id = accepted(trigger(http, emulator))["operationId"]
    assert operation_data(operation(http, emulator, next_id))["state"] == "completed"


def test_fail_next_rebalance_refuses_an_unknown_state(emulator: GliderEmulator) -> None:
    with pytest.raises(ValueError, match="state"):
        emulator.fail_next_rebalance(PORTFOLIO, "x", state="timed_out")  # type: ignore[arg-type]


def test_awaiting_user_is_in_flight_for_the_whole_workflow_time(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.set_workflow_seconds(3600)
    emulator.await_user_next_rebalance(PORTFOLIO)
    submitted = accepted(trigger(http, emulator))
    [rebalance] = emulator.rebalances

    data = operation_data(operation(http, emulator, submitted["operationId"]))
    v1 = v1_status(http, emulator, f"/{rebalance.rebalance_id}").json()["data"]
    again = accepted(trigger(http, emulator))
    emulator.set_workflow_seconds(0)
    done = operation_data(operation(http, emulator, submitted["operationId"]))
    next_id = accepted(trigger(http, emulator))["operationId"]
    later = operation_data(operation(http, emulator, next_id))

    assert (data["state"], data["finishedAt"], data["error"]) == ("awaiting_user", None, None)
    assert data["updatedAt"] == submitted["submittedAt"]
    assert v1["status"] == "running"
    assert again == submitted  # awaiting the user is in flight
    assert emulator.collapsed_triggers() == 1
    assert done["state"] == "completed"
    assert later["state"] == "completed"  # only the next rebalance awaited the user
    assert len(emulator.rebalances) == 2


# --------------------------------------------------------------------------- the portfolio


def test_the_portfolio_shows_its_schedule_and_last_rebalance(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    before = portfolio(http, emulator)
    assert before.status == 200
    assert_v2_headers(before)
    payload = before.json()
    assert set(payload) == {"success", "data"}
    data = payload["data"]
    assert set(data) == {"portfolioId", "name", "schedule"}
    assert (data["portfolioId"], data["name"]) == (PORTFOLIO, PORTFOLIO)
    schedule = data["schedule"]
    assert set(schedule) == {"status", "frequency", "intervalMs", "nextDueAt", "lastRebalanceAt"}
    assert (schedule["status"], schedule["frequency"], schedule["intervalMs"]) == (
        "active",
        "6h",
        21_600_000,
    )
    assert TIMESTAMP.match(schedule["nextDueAt"])
    assert epoch(schedule["nextDueAt"]) == pytest.approx(time.time() + 6 * 3600, abs=5)
    assert schedule["lastRebalanceAt"] is None

    assert v1_trigger(http, emulator).status == 200
    after_v1 = portfolio(http, emulator).json()["data"]["schedule"]["lastRebalanceAt"]
    submitted = accepted(trigger(http, emulator))["submittedAt"]
    after_v2 = portfolio(http, emulator).json()["data"]["schedule"]["lastRebalanceAt"]

    first, _ = emulator.rebalances
    assert epoch(after_v1) == pytest.approx(first.started_at, abs=0.001)
    assert after_v2 == submitted


def test_a_portfolio_without_a_schedule_shows_it_paused(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    schedule = portfolio(http, emulator, NO_SCHEDULE).json()["data"]["schedule"]
    assert schedule["status"] == "paused"
    assert schedule["nextDueAt"] is None
    assert schedule["intervalMs"] == 21_600_000


# --------------------------------------------------------------------------- the versions share


def test_v1_and_v2_rebalances_are_visible_on_both_versions(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    assert v1_trigger(http, emulator).status == 200
    operation_id = accepted(trigger(http, emulator))["operationId"]
    from_v1, from_v2 = emulator.rebalances

    assert (from_v1.api_version, from_v2.api_version) == ("v1", "v2")
    assert OPERATION_ID.match(from_v1.operation_id)
    assert from_v2.operation_id == operation_id
    # The v1 one on v2's operations endpoint...
    assert operation_data(operation(http, emulator, from_v1.operation_id))["state"] == "completed"
    # ...and the v2 one among v1's workflows.
    listed = v1_status(http, emulator).json()["data"]
    assert [w["workflowId"] for w in listed["recentWorkflows"]] == [
        from_v2.rebalance_id,
        from_v1.rebalance_id,
    ]
    assert listed["details"]["totalExecutions"] == 2
    workflow = v1_status(http, emulator, f"/{from_v2.rebalance_id}").json()["data"]
    assert workflow["status"] == "completed"
    assert emulator.rebalances_for(PORTFOLIO) == [from_v1, from_v2]
    # The trigger requests of both versions, not the reads.
    assert [r.path.split("/")[1] for r in emulator.trigger_requests] == ["v1", "v2"]


def test_reset_forgets_the_v2_state_and_keeps_the_keys(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.add_v2_key(V2_KEY)
    emulator.add_v1_key(V1_KEY)
    emulator.set_workflow_seconds(3600)
    accepted(trigger(http, emulator))
    accepted(trigger(http, emulator))
    emulator.await_user_next_rebalance(PORTFOLIO)
    emulator.fail_next_rebalance(PORTFOLIO, state="cancelled")
    assert emulator.collapsed_triggers() == 1

    emulator.reset()

    assert (emulator.collapsed_triggers(), emulator.rebalances, emulator.requests) == (0, [], [])
    operation_id = accepted(trigger(http, emulator, key=V2_KEY))["operationId"]
    assert operation_id.endswith("%2F1")
    emulator.set_workflow_seconds(0)
    assert operation_data(operation(http, emulator, operation_id))["state"] == "completed"
    assert v1_trigger(http, emulator, NO_SCHEDULE, key=V1_KEY).status == 200


# --------------------------------------------------------------------------- scripted faults


def test_an_error_fault_answers_in_the_v2_envelope_once(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(PORTFOLIO, Fault.error(503, "API_000", "Service unavailable"))
    payload = assert_v2_error(trigger(http, emulator), 503, "API_000")
    assert payload["error"]["message"] == "Service unavailable"
    assert emulator.rebalances == []
    accepted(trigger(http, emulator))


def test_a_key_quoting_fault_quotes_the_key_in_the_v2_envelope(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(PORTFOLIO, Fault.quoting_key(400, "API_002", "Invalid request from key"))
    emulator.script_status(PORTFOLIO, Fault.quoting_key(403, "API_104"))
    response = trigger(http, emulator)
    assert response.status == 400
    assert_v2_headers(response)
    payload = response.json()
    assert set(payload) == {"success", "error"}
    assert payload["error"]["message"] == f"Invalid request from key {API_KEY}"
    assert payload["error"]["details"] == {"apiKey": API_KEY}
    read = portfolio(http, emulator)
    assert (read.status, read.json()["error"]["code"]) == (403, "API_104")
    assert API_KEY in read.json()["error"]["message"]
    accepted(trigger(http, emulator))


def test_the_fault_queue_is_shared_by_both_versions(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(PORTFOLIO, Fault.error(500, "API_000", "first"), Fault.error(502, "X", "y"))
    assert v1_trigger(http, emulator).status == 500
    assert_v2_error(trigger(http, emulator), 502, "X")
    accepted(trigger(http, emulator))


def test_an_outage_answers_the_v2_trigger(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.set_outage(Fault.error(503, "API_000", "down"))
    assert_v2_error(trigger(http, emulator), 503, "API_000")
    assert portfolio(http, emulator).status == 200  # reads are not triggers
    emulator.set_outage(None)
    accepted(trigger(http, emulator))


def test_a_rate_limited_fault_is_429_api_004(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(PORTFOLIO, Fault.rate_limited(retry_after=42))
    response = trigger(http, emulator)
    assert_v2_error(response, 429, "API_004", {"retryAfter": 42})
    assert response.headers["Retry-After"] == "42"
    assert emulator.rebalances == []


def test_a_malformed_fault_sends_the_raw_body_with_the_v2_headers(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(PORTFOLIO, Fault.malformed(502))
    response = trigger(http, emulator)
    assert response.status == 502
    assert response.headers["Content-Type"] == "text/html"
    assert response.data == b"<html>oops</html>"
    assert_v2_headers(response)
    assert emulator.rebalances == []


def test_a_connection_reset_fault_triggers_nothing(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(PORTFOLIO, Fault.connection_reset())
    with pytest.raises(ProtocolError):
        trigger(http, emulator)
    assert emulator.rebalances == []
    assert emulator.requests[0].status is None
    accepted(trigger(http, emulator))


def test_a_slow_fault_answers_late_and_still_triggers(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(PORTFOLIO, Fault.slow(1.0), Fault.slow(0.2))
    with pytest.raises(ReadTimeoutError):
        trigger(http, emulator, timeout=urllib3.Timeout(connect=2.0, read=0.2))
    started = time.monotonic()
    accepted(trigger(http, emulator, NO_SCHEDULE))  # another portfolio: no fault
    deadline = time.monotonic() + 3
    while not emulator.rebalances_for(PORTFOLIO) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(emulator.rebalances_for(PORTFOLIO)) == 1  # the client gave up, Glider did not
    assert time.monotonic() - started < 2

    started = time.monotonic()
    response = trigger(http, emulator)
    assert time.monotonic() - started >= 0.2
    assert response.status == 202  # the second fault: slow, then the answer


def test_a_lost_response_triggers_and_the_retry_collapses_while_in_flight(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.set_workflow_seconds(3600)
    emulator.script(PORTFOLIO, Fault.lost_response())
    with pytest.raises(ProtocolError):
        trigger(http, emulator)
    [rebalance] = emulator.rebalances
    assert emulator.requests[0].status is None

    retry = accepted(trigger(http, emulator))

    assert retry["operationId"] == rebalance.operation_id
    assert len(emulator.rebalances) == 1
    assert emulator.collapsed_triggers() == 1


def test_a_truncated_answer_sends_the_202_head_and_half_the_body(
    emulator: GliderEmulator,
) -> None:
    emulator.script(PORTFOLIO, Fault.truncated())
    host, port = emulator.base_url.removeprefix("http://").split(":")
    answer = b""
    with socket.create_connection((host, int(port)), timeout=2) as conn:
        conn.sendall(
            f"POST /v2/portfolios/{PORTFOLIO}/rebalance HTTP/1.1\r\nHost: x\r\n"
            f"x-api-key: {API_KEY}\r\nContent-Length: 0\r\n\r\n".encode()
        )
        try:
            while chunk := conn.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 202")
    assert b"X-Correlation-Id: corr_" in head
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
    assert len(body) < length
    assert body.startswith(b'{"success":true')
    [rebalance] = emulator.rebalances
    assert rebalance.api_version == "v2"


def test_an_acted_then_error_fault_triggers_then_answers_the_error(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script(PORTFOLIO, Fault.acted_then_error(503, "API_000"))
    assert_v2_error(trigger(http, emulator), 503, "API_000")
    [rebalance] = emulator.rebalances
    assert rebalance.api_version == "v2"


def test_status_faults_answer_the_v2_reads_but_not_whoami_or_scopes(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    operation_id = accepted(trigger(http, emulator))["operationId"]
    emulator.script_status(PORTFOLIO, Fault.error(503, "API_000", "down"), Fault.rate_limited(7))

    assert_v2_error(portfolio(http, emulator), 503, "API_000")
    response = operation(http, emulator, operation_id)
    assert_v2_error(response, 429, "API_004", {"retryAfter": 7})
    assert response.headers["Retry-After"] == "7"
    assert portfolio(http, emulator).status == 200  # both used up

    emulator.set_status_outage(Fault.malformed(502))
    assert operation(http, emulator, operation_id).status == 502
    assert portfolio(http, emulator).data == b"<html>oops</html>"
    assert call(http, emulator, "GET", "/v2/whoami").status == 200
    assert call(http, emulator, "GET", "/v2/scopes", key=None).status == 200
    accepted(trigger(http, emulator))  # triggers are not status requests
    emulator.set_status_outage(None)
    assert operation_data(operation(http, emulator, operation_id))["state"] == "completed"


def test_a_connection_reset_status_fault_on_a_v2_read(
    emulator: GliderEmulator, http: urllib3.PoolManager
) -> None:
    emulator.script_status(PORTFOLIO, Fault.connection_reset())
    with pytest.raises(ProtocolError):
        portfolio(http, emulator)
    assert portfolio(http, emulator).status == 200
