"""Status codes and Twilio's error bodies: auth, unknown resources, bad parameters, 429 and scripted faults."""

from __future__ import annotations

import base64
import threading
from http.client import HTTPConnection, IncompleteRead
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import requests

from tests.kit.spec import ACCOUNT_AUTH, API_KEY_AUTH, CREDENTIALS, StudioHttp, visible_sids
from tests.kit.studio import EmulatorFactory
from twilio_studio.emulator import Faults


def assert_twilio_error(r: requests.Response, status: int, code: int) -> None:
    """The answer is Twilio's error body, exactly: {code, message, more_info, status}."""
    assert r.status_code == status, r.text[:300]
    assert r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert sorted(body) == ["code", "message", "more_info", "status"]
    assert (body["code"], body["status"]) == (code, status)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert isinstance(body["message"], str)
    assert body["message"]


# ------------------------------------------------------------------------ authentication
def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


AUTH_CASES = [
    pytest.param({}, 401, id="no_auth"),
    pytest.param(_basic(CREDENTIALS.account_sid, "wrong-token"), 401, id="wrong_token"),
    pytest.param(_basic("AC" + "b" * 32, CREDENTIALS.auth_token), 401, id="other_account"),
    pytest.param(_basic(CREDENTIALS.api_key_sid, CREDENTIALS.auth_token), 401, id="api_key_with_auth_token"),
    pytest.param(_basic(CREDENTIALS.account_sid, ""), 401, id="empty_password"),
    pytest.param({"Authorization": "Basic !!not-base64!!"}, 401, id="malformed_basic"),
    pytest.param({"Authorization": "Bearer " + CREDENTIALS.auth_token}, 401, id="bearer_scheme"),
    pytest.param(_basic(*ACCOUNT_AUTH), 200, id="account_sid_and_auth_token"),
    pytest.param(_basic(*API_KEY_AUTH), 200, id="api_key_and_secret"),
]


@pytest.mark.parametrize(("headers", "status"), AUTH_CASES)
@pytest.mark.parametrize("path", ["/v1/Flows", "/v1/Flows/{flow}/Engagements", "/v2/Flows/{flow}/Executions"])
def test_authentication(emulator_factory: EmulatorFactory, headers: dict[str, str], status: int, path: str) -> None:
    emulator = emulator_factory()
    url = emulator.base_url + path.format(flow=emulator.dataset.flows[0].sid)
    r = requests.get(url, headers=headers, timeout=10)
    if status == 200:
        assert r.status_code == 200, r.text[:300]
        assert r.json()["meta"]["page"] == 0
    else:
        assert_twilio_error(r, 401, 20003)


# ------------------------------------------------------------------------ 404
NOT_FOUND = [
    pytest.param("/v1/Flows/FW" + "0" * 32, id="unknown_flow"),
    pytest.param("/v1/Flows/FW" + "0" * 32 + "/Engagements", id="unknown_flow_engagements"),
    pytest.param("/v2/Flows/FW" + "0" * 32 + "/Executions", id="unknown_flow_executions"),
    pytest.param("/v1/Flows/{flow}/Engagements/FN" + "0" * 32, id="unknown_engagement"),
    pytest.param("/v1/Flows/{flow}/Engagements/FN" + "0" * 32 + "/Context", id="unknown_engagement_context"),
    pytest.param("/v1/Flows/{flow}/Engagements/FN" + "0" * 32 + "/Steps", id="unknown_engagement_steps"),
    pytest.param("/v2/Flows/{flow}/Executions/FN" + "0" * 32, id="unknown_execution"),
    pytest.param("/v1/Flows/{flow}/Engagements/{other_flows_sid}", id="engagement_of_another_flow"),
    pytest.param("/v1/Flows/{flow}/Engagements/{future_sid}", id="engagement_not_created_yet"),
    pytest.param("/v1/Flows/{flow}/Engagements/{sid}/Steps/FT" + "0" * 32, id="unknown_step"),
    pytest.param("/v1/Flows/{flow}/Engagements/{sid}/Steps/FT" + "0" * 32 + "/Context", id="unknown_step_context"),
    pytest.param("/v1/Flows/not-a-sid", id="malformed_flow_sid"),
    pytest.param("/v1/Flows/{flow}/Engagements/{sid}/Nope", id="unknown_sub_resource"),
    pytest.param("/v3/Flows", id="unknown_version"),
    # Twilio's v2 spec has Executions only: Engagements are a v1 resource
    pytest.param("/v2/Flows/{flow}/Engagements", id="v2_has_no_engagements_list"),
    pytest.param("/v2/Flows/{flow}/Engagements/{sid}", id="v2_has_no_engagement_fetch"),
]  # fmt: skip


@pytest.mark.parametrize("template", NOT_FOUND)
def test_unknown_resources_answer_404(emulator_factory: EmulatorFactory, template: str) -> None:
    emulator = emulator_factory()
    dataset = emulator.dataset
    flow = dataset.flows[0]
    _, hi = dataset.index_range(flow, emulator.now())
    path = template.format(
        flow=flow.sid,
        sid=visible_sids(emulator, 0)[0],
        other_flows_sid=visible_sids(emulator, 1)[0],
        future_sid=dataset.script(flow, hi + 3).sid,
    )
    assert_twilio_error(StudioHttp(emulator.base_url).get(path), 404, 20404)


# ------------------------------------------------------------------------ 400
def _token_of(http: StudioHttp, path: str) -> str:
    next_url = http.json(path, PageSize=5)["meta"]["next_page_url"]
    return str(parse_qs(urlsplit(next_url).query)["PageToken"][0])


BAD_PARAMETERS = [
    pytest.param("engagements", {"PageSize": "0"}, 20001, id="page_size_0"),
    pytest.param("engagements", {"PageSize": "1001"}, 20001, id="page_size_1001"),
    pytest.param("engagements", {"PageSize": "-5"}, 20001, id="page_size_negative"),
    pytest.param("engagements", {"PageSize": "ten"}, 20001, id="page_size_not_a_number"),
    pytest.param("engagements", {"PageToken": "PTforged"}, 21481, id="page_token_forged"),
    pytest.param("engagements", {"PageToken": "garbage"}, 21481, id="page_token_without_prefix"),
    pytest.param("engagements", {"PageToken": "PT" + base64.urlsafe_b64encode(b"[1,2]").decode()}, 21481,
                 id="page_token_wrong_shape"),
    pytest.param("engagements", {"PageToken": "{executions_token}"}, 21481, id="page_token_of_another_list"),
    pytest.param("engagements", {"PageToken": "{other_flows_token}"}, 21481, id="page_token_of_another_flow"),
    pytest.param("v2_executions", {"status": "finished"}, 20001, id="v2_status_unknown"),
    pytest.param("v2_executions", {"DateCreatedFrom": "yesterday"}, 20001, id="date_created_from_not_iso"),
    pytest.param("v2_executions", {"DateCreatedTo": "2026-03-01T00:00:00"}, 20001, id="date_created_to_naive"),
]  # fmt: skip

LIST_PATHS = {
    "engagements": "/v1/Flows/{flow}/Engagements",
    "v2_executions": "/v2/Flows/{flow}/Executions",
}


@pytest.mark.parametrize(("list_name", "params", "code"), BAD_PARAMETERS)
def test_bad_parameters_answer_400(
    emulator_factory: EmulatorFactory, list_name: str, params: dict[str, str], code: int
) -> None:
    emulator = emulator_factory()
    http = StudioHttp(emulator.base_url)
    flow, other = (f.sid for f in emulator.dataset.flows)
    tokens = {
        "{executions_token}": _token_of(http, f"/v1/Flows/{flow}/Executions"),
        "{other_flows_token}": _token_of(http, f"/v1/Flows/{other}/Engagements"),
    }
    params = {k: tokens.get(v, v) for k, v in params.items()}
    assert_twilio_error(http.get(LIST_PATHS[list_name].format(flow=flow), **params), 400, code)


@pytest.mark.parametrize("page_size", [1, 1000])
def test_page_size_limits_are_inclusive(emulator_factory: EmulatorFactory, page_size: int) -> None:
    emulator = emulator_factory(flows=1, engagements=1200)
    body = StudioHttp(emulator.base_url).json(
        f"/v1/Flows/{emulator.dataset.flows[0].sid}/Engagements", PageSize=page_size
    )
    assert (len(body["engagements"]), body["meta"]["page_size"]) == (page_size, page_size)


def test_default_page_size_is_50(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory()
    body = StudioHttp(emulator.base_url).json(f"/v1/Flows/{emulator.dataset.flows[0].sid}/Engagements")
    assert (len(body["engagements"]), body["meta"]["page_size"]) == (50, 50)


# ------------------------------------------------------------------------ 429: concurrency cap
@pytest.mark.parametrize(
    ("retry_after", "header"),
    [pytest.param(2, "2", id="with_retry_after"), pytest.param(None, None, id="without_retry_after")],
)
def test_requests_over_the_concurrency_cap_answer_429(
    emulator_factory: EmulatorFactory, retry_after: int | None, header: str | None
) -> None:
    emulator = emulator_factory(faults=Faults(max_concurrency=1, latency=0.3, retry_after=retry_after))
    path = f"/v1/Flows/{emulator.dataset.flows[0].sid}/Engagements"
    barrier = threading.Barrier(2)
    answers: list[requests.Response] = []

    def call() -> None:
        http = StudioHttp(emulator.base_url)  # one connection each, as two workers would
        barrier.wait()
        answers.append(http.get(path))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(r.status_code for r in answers) == [200, 429]
    throttled = next(r for r in answers if r.status_code == 429)
    assert_twilio_error(throttled, 429, 20429)
    assert throttled.headers.get("Retry-After") == header
    assert emulator.stats.max_in_flight == 2
    # once the first request is done, the same account may call again
    assert StudioHttp(emulator.base_url).get(path).status_code == 200


def test_the_concurrency_cap_counts_requests_in_flight_not_requests_made(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(faults=Faults(max_concurrency=1, latency=0.05))
    http = StudioHttp(emulator.base_url)
    assert [http.get("/v1/Flows").status_code for _ in range(5)] == [200] * 5


# ------------------------------------------------------------------------ scripted faults
def test_inject_throttle_answers_429_once(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory()
    http = StudioHttp(emulator.base_url)
    emulator.inject("throttle")
    r = http.get("/v1/Flows")
    assert_twilio_error(r, 429, 20429)
    assert r.headers["Retry-After"] == "1"
    assert http.get("/v1/Flows").status_code == 200
    assert emulator.pending_faults() == 0


def test_inject_error_answers_a_5xx_twilio_error(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory()
    http = StudioHttp(emulator.base_url)
    emulator.inject("error", times=2)
    for _ in range(2):
        r = http.get("/v1/Flows")
        assert r.status_code in (500, 503)
        assert_twilio_error(r, r.status_code, 20500)
    assert http.get("/v1/Flows").status_code == 200


def test_inject_drop_closes_the_connection_without_an_answer(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory()
    http = StudioHttp(emulator.base_url)
    emulator.inject("drop")
    with pytest.raises(requests.ConnectionError):
        http.get("/v1/Flows")
    assert http.get("/v1/Flows").status_code == 200  # a new connection works


def test_inject_truncate_sends_half_the_promised_body(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory()
    emulator.inject("truncate")
    host, port = urlsplit(emulator.base_url).hostname, urlsplit(emulator.base_url).port
    assert host is not None
    conn = HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/v1/Flows", headers=_basic(*ACCOUNT_AUTH))
    r = conn.getresponse()
    assert r.status == 200
    promised = int(r.headers["Content-Length"])
    with pytest.raises(IncompleteRead) as err:
        r.read()
    assert len(err.value.partial) == promised // 2
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(err.value.partial)
    conn.close()
    assert StudioHttp(emulator.base_url).get("/v1/Flows").status_code == 200


def test_injected_faults_wait_for_a_matching_path(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory()
    http = StudioHttp(emulator.base_url)
    flow = emulator.dataset.flows[0].sid
    emulator.inject("error", path_contains="/Executions")
    assert http.get("/v1/Flows").status_code == 200
    assert http.get(f"/v1/Flows/{flow}/Engagements").status_code == 200
    assert emulator.pending_faults() == 1
    assert http.get(f"/v2/Flows/{flow}/Executions").status_code in (500, 503)
    assert emulator.pending_faults() == 0


def test_inject_rejects_an_unknown_kind(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory()
    with pytest.raises(ValueError, match="fault kind must be one of"):
        emulator.inject("explode")


def test_faults_do_not_reach_unauthenticated_requests(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory()
    emulator.inject("error")
    assert_twilio_error(StudioHttp(emulator.base_url, auth=None).get("/v1/Flows"), 401, 20003)
    assert emulator.pending_faults() == 1
