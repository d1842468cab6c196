"""The seeds' write operations: create, end and delete engagements and executions.

Through Twilio's own SDK and plain HTTP; a created run walks its flow as the clock moves, a deleted
one is gone.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from twilio.base.exceptions import TwilioException, TwilioRestException

from tests.kit.sdk import sdk_client
from tests.kit.spec import StudioHttp, parse_date, spec_errors, visible_sids
from tests.kit.studio import EmulatorFactory

CONTACT, FLOW_NUMBER = "+14155550123", "+15005550006"
KINDS = ["v1/Flows/{flow}/Engagements", "v1/Flows/{flow}/Executions", "v2/Flows/{flow}/Executions"]
PARAMETERS = {"name": "Zeke", "order": {"id": "ORD-7", "items": [{"sku": "A1", "qty": 2}]}, "vip": True}


def test_sdk_creates_reads_and_deletes_an_engagement(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(flows=2, engagements=30)
    client, _ = sdk_client(emulator, "auth_token")
    flow_sid = emulator.dataset.flows[1].sid
    engagements = client.studio.v1.flows(flow_sid).engagements

    created = engagements.create(to=CONTACT, from_=FLOW_NUMBER, parameters=PARAMETERS)
    assert created.sid.startswith("FN") and len(created.sid) == 34
    assert (created.status, created.contact_channel_address, created.flow_sid) == ("active", CONTACT, flow_sid)
    assert created.date_created == emulator.now()

    fetched = engagements(created.sid).fetch()
    assert fetched.sid == created.sid and fetched.contact_sid == created.contact_sid
    listed = [e.sid for e in engagements.list(page_size=7)]
    assert listed[0] == created.sid  # the newest
    assert listed[1:] == visible_sids(emulator, 1)

    emulator.advance(hours=2)  # the flow's widgets run
    context = engagements(created.sid).engagement_context().fetch().context
    assert context["flow"]["data"] == PARAMETERS
    assert context["trigger"] == {"request": {"parameters": PARAMETERS}}
    assert context["contact"]["channel"]["address"] == CONTACT
    assert context["flow"]["channel"]["address"] == FLOW_NUMBER
    steps = engagements(created.sid).steps.list()
    assert steps and steps[0].transitioned_to == "Ended"  # newest first, the walk complete
    assert engagements(created.sid).fetch().status == "ended"
    # the first step ran the trigger on the REST request; the next one the flow's first widget
    assert (steps[-1].transitioned_from, steps[-1].name) == ("Trigger", "incomingRequest")
    step = engagements(created.sid).steps(steps[-2].sid).step_context().fetch()
    assert set(step.context["widgets"]) == {steps[-2].transitioned_from}

    assert engagements(created.sid).delete() is True
    for read in (
        lambda: engagements(created.sid).fetch(),
        lambda: engagements(created.sid).engagement_context().fetch(),
        lambda: client.studio.v2.flows(flow_sid).executions(created.sid).fetch(),
    ):
        with pytest.raises(TwilioRestException) as err:
            read()
        assert (err.value.status, err.value.code) == (404, 20404)
    with pytest.raises(TwilioException) as page_err:  # the SDK's list raises its base class
        engagements(created.sid).steps.list()
    assert page_err.value.args[1].status_code == 404
    assert [e.sid for e in engagements.list()] == visible_sids(emulator, 1)


def test_sdk_creates_ends_and_deletes_executions(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(flows=1, engagements=20)
    client, _ = sdk_client(emulator, "api_key")
    flow_sid = emulator.dataset.flows[0].sid
    v2 = client.studio.v2.flows(flow_sid).executions
    created = v2.create(to=CONTACT, from_=FLOW_NUMBER, parameters={"campaign": "spring"})
    assert created.status == "active" and created.flow_version == emulator.dataset.flows[0].version
    assert v2(created.sid).execution_context().fetch().context["flow"]["data"] == {"campaign": "spring"}
    assert created.sid in [e.sid for e in v2.list(status="active")]

    emulator.advance(seconds=1)
    steps_then = [s.sid for s in v2(created.sid).steps.list()]
    ended = v2(created.sid).update(status="ended")
    assert ended.status == "ended" and ended.date_updated == emulator.now()
    assert created.sid not in [e.sid for e in v2.list(status="active")]
    assert created.sid in [e.sid for e in v2.list(status="ended")]
    emulator.advance(hours=5)  # an ended execution walks no further
    assert client.studio.v1.flows(flow_sid).executions(created.sid).fetch().status == "ended"
    assert [s.sid for s in v2(created.sid).steps.list()] == steps_then

    v1 = client.studio.v1.flows(flow_sid).executions.create(to="client:alice", from_=FLOW_NUMBER)
    assert v1.contact_channel_address == "client:alice"
    assert client.studio.v1.flows(flow_sid).executions(v1.sid).delete() is True
    with pytest.raises(TwilioRestException) as err:
        client.studio.v1.flows(flow_sid).engagements(v1.sid).fetch()
    assert err.value.status == 404


def test_deleting_a_datasets_engagement(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(flows=2, engagements=40)
    http = StudioHttp(emulator.base_url)
    flow = emulator.dataset.flows[0]
    before = visible_sids(emulator, 0)
    victim = before[5]
    base = f"/v1/Flows/{flow.sid}/Engagements/{victim}"
    assert http.json(base + "/Steps")["steps"]
    r = http.session.delete(emulator.base_url + base, timeout=10)
    assert (r.status_code, r.content) == (204, b"")
    for path in (base, base + "/Context", base + "/Steps", f"/v2/Flows/{flow.sid}/Executions/{victim}"):
        r = http.get(path)
        assert r.status_code == 404 and r.json()["code"] == 20404, path
    assert [e["sid"] for e in http.records(f"/v1/Flows/{flow.sid}/Engagements", PageSize=7)] == [
        s for s in before if s != victim
    ]
    assert [e["sid"] for e in http.records(f"/v2/Flows/{flow.sid}/Executions")] == [s for s in before if s != victim]
    assert http.session.delete(emulator.base_url + base, timeout=10).status_code == 404
    assert [e["sid"] for e in http.records(f"/v1/Flows/{emulator.dataset.flows[1].sid}/Engagements")] == (
        visible_sids(emulator, 1)
    )


def test_created_runs_list_newest_first_among_the_datasets(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(flows=1, engagements=300)
    http = StudioHttp(emulator.base_url)
    flow_sid = emulator.dataset.flows[0].sid
    path = f"/v1/Flows/{flow_sid}/Engagements"
    made = []
    for n in range(6):
        r = http.session.post(emulator.base_url + path, data={"To": f"+1415555{n:04d}", "From": FLOW_NUMBER},
                              timeout=10)  # fmt: skip
        assert r.status_code == 200 and spec_errors(path + "/" + r.json()["sid"], r.json()) == []
        made.append(r.json()["sid"])
        emulator.advance(minutes=37)  # dataset runs arrive in between
    records = http.records(path, PageSize=9)
    sids = [e["sid"] for e in records]
    assert len(sids) == len(set(sids)) and set(made) <= set(sids)
    assert set(sids) - set(made) == set(visible_sids(emulator, 0))
    dates = [parse_date(e["date_created"]) for e in records]
    assert dates == sorted(dates, reverse=True)
    first, last = sids.index(made[0]), sids.index(made[-1])
    assert first - last > len(made)  # dataset runs that arrived in between sit between them


def twilio_error(r: Any) -> dict[str, Any]:
    body: dict[str, Any] = r.json()
    assert set(body) == {"code", "message", "more_info", "status"}
    assert body["status"] == r.status_code and body["more_info"].endswith(str(body["code"]))
    return body


@pytest.mark.parametrize(
    ("form", "status", "code", "message"),
    [
        pytest.param({"From": FLOW_NUMBER}, 400, 20001, "Missing required parameter To", id="no_to"),
        pytest.param({"To": CONTACT}, 400, 20001, "Missing required parameter From", id="no_from"),
        pytest.param({"To": "", "From": FLOW_NUMBER}, 400, 20001, "Missing required parameter To", id="empty_to"),
        pytest.param({"To": "hello", "From": FLOW_NUMBER}, 400, 21211, "Invalid 'To' Phone Number", id="bad_to"),
        pytest.param({"To": CONTACT, "From": "12"}, 400, 21212, "Invalid 'From' Phone Number", id="bad_from"),
        pytest.param(
            {"To": CONTACT, "From": FLOW_NUMBER, "Parameters": "{name: 1"},
            400,
            20001,
            "not valid JSON",
            id="malformed_parameters",
        ),
        pytest.param(
            {"To": CONTACT, "From": FLOW_NUMBER, "Parameters": "[1, 2]"},
            400,
            20001,
            "must be a JSON object",
            id="parameters_not_an_object",
        ),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_create_refuses_what_twilio_refuses(
    emulator_factory: EmulatorFactory, kind: str, form: dict[str, str], status: int, code: int, message: str
) -> None:
    emulator = emulator_factory(flows=1, engagements=5)
    http = StudioHttp(emulator.base_url)
    url = f"{emulator.base_url}/{kind.format(flow=emulator.dataset.flows[0].sid)}"
    r = http.session.post(url, data=form, timeout=10)
    assert r.status_code == status
    body = twilio_error(r)
    assert body["code"] == code and message in body["message"]
    assert len(http.records(url)) == 5  # nothing was created


@pytest.mark.parametrize(
    ("form", "status", "code"),
    [
        pytest.param({}, 400, 20001, id="no_status"),
        pytest.param({"Status": "active"}, 400, 20001, id="only_ended_is_allowed"),
        pytest.param({"Status": "paused"}, 400, 20001, id="not_a_status"),
    ],
)
def test_update_execution_refuses_other_statuses(
    emulator_factory: EmulatorFactory, form: dict[str, str], status: int, code: int
) -> None:
    emulator = emulator_factory(flows=1, engagements=5)
    flow_sid = emulator.dataset.flows[0].sid
    sid = visible_sids(emulator, 0)[0]
    r = StudioHttp(emulator.base_url).session.post(
        f"{emulator.base_url}/v2/Flows/{flow_sid}/Executions/{sid}", data=form, timeout=10
    )
    assert r.status_code == status and twilio_error(r)["code"] == code


def test_writes_need_credentials_and_a_known_flow(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(flows=1, engagements=5)
    flow_sid = emulator.dataset.flows[0].sid
    url = f"{emulator.base_url}/v1/Flows/{flow_sid}/Engagements"
    anonymous = StudioHttp(emulator.base_url, auth=None).session
    assert anonymous.post(url, data={"To": CONTACT, "From": FLOW_NUMBER}, timeout=10).status_code == 401
    sid = visible_sids(emulator, 0)[0]
    assert anonymous.delete(f"{url}/{sid}", timeout=10).status_code == 401
    http = StudioHttp(emulator.base_url).session
    unknown = f"{emulator.base_url}/v1/Flows/FW{'0' * 32}/Engagements"
    assert http.post(unknown, data={"To": CONTACT, "From": FLOW_NUMBER}, timeout=10).status_code == 404
    r = http.post(f"{url}/{sid}", data={"Status": "ended"}, timeout=10)  # engagements cannot be updated
    assert r.status_code == 405 and twilio_error(r)["code"] == 20004
    for method in ("PUT", "PATCH"):
        r = http.request(method, f"{url}/{sid}", data={"Status": "ended"}, timeout=10)
        assert r.status_code == 405 and twilio_error(r)["code"] == 20004
    assert len(StudioHttp(emulator.base_url).records(url)) == 5


@pytest.mark.parametrize(
    ("query", "status"),
    [
        pytest.param({"Page": "18446744073709551616"}, 200, id="page_beyond_64_bits"),
        pytest.param({"Page": "0"}, 200, id="page_zero"),
        pytest.param({"Page": "007"}, 200, id="page_leading_zeros"),
        pytest.param({"Page": "-1"}, 400, id="page_negative"),
        pytest.param({"Page": "1.5"}, 400, id="page_fraction"),
        pytest.param({"Page": ""}, 400, id="page_empty"),
        pytest.param({"Page": "x"}, 400, id="page_text"),
        pytest.param({"PageSize": "0"}, 400, id="page_size_zero"),
        pytest.param({"PageSize": "1001"}, 400, id="page_size_too_big"),
        pytest.param({"PageSize": "99999999999999999999999"}, 400, id="page_size_huge"),
        pytest.param({"PageSize": "-5"}, 400, id="page_size_negative"),
        pytest.param({"PageSize": "1"}, 200, id="page_size_one"),
        pytest.param({"PageToken": "PTnonsense"}, 400, id="page_token_forged"),
        pytest.param({"DateCreatedFrom": "2026-02-30T00:00:00Z"}, 400, id="date_not_in_calendar"),
        pytest.param({"DateCreatedFrom": "2026-02-20"}, 400, id="date_without_time"),
        pytest.param({"DateCreatedFrom": "2026-02-20T00:00:00"}, 400, id="date_without_zone"),
        pytest.param({"DateCreatedFrom": "2026-02-20T00:00:00.123456789+01:00"}, 200, id="date_nanoseconds"),
        pytest.param({"DateCreatedTo": "2026-02-20t00:00:00z"}, 200, id="date_lower_case"),
        pytest.param({"status": "paused"}, 400, id="status_not_in_enum"),
    ],
)
def test_query_parameters_never_cost_a_connection(
    emulator_factory: EmulatorFactory, query: dict[str, str], status: int
) -> None:
    emulator = emulator_factory(flows=1, engagements=30)
    http = StudioHttp(emulator.base_url)
    path = f"/v2/Flows/{emulator.dataset.flows[0].sid}/Executions"
    r = http.get(path, **query)
    assert r.status_code == status, r.text
    if status == 400:
        assert twilio_error(r)["code"] in (20001, 21481)
    else:
        body = r.json()
        assert spec_errors(path, body) == []
        assert body["meta"]["page"] == int(query.get("Page", "0"))
    assert http.get(path).status_code == 200  # the same keep-alive connection still serves


def test_page_number_is_client_state_of_any_size(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(flows=1, engagements=30)
    body = StudioHttp(emulator.base_url).json(f"/v1/Flows/{emulator.dataset.flows[0].sid}/Engagements",
                                              Page="18446744073709551616", PageSize="10")  # fmt: skip
    assert body["meta"]["page"] == 18446744073709551616 and len(body["engagements"]) == 10
    assert "Page=18446744073709551617" in body["meta"]["next_page_url"]
    assert json.loads(json.dumps(body))["meta"]["page"] == 2**64
