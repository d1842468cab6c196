"""The emulator's clock: retention, engagements that progress and end, list filters, control endpoints."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from tests.kit.spec import StudioHttp, parse_date, visible_sids
from tests.kit.studio import EmulatorFactory, listed

RETENTION = timedelta(days=30)  # ../shared/API-NOTES.md "Lifetime and retention"


# ------------------------------------------------------------------------ retention
@pytest.mark.parametrize(
    "path",
    ["/v1/Flows/{flow}/Engagements", "/v1/Flows/{flow}/Executions", "/v2/Flows/{flow}/Executions"],
)
def test_after_31_days_lists_show_only_engagements_of_the_last_30_days(
    emulator_factory: EmulatorFactory, path: str
) -> None:
    emulator = emulator_factory(flows=1, engagements=150)
    http = StudioHttp(emulator.base_url)
    path = path.format(flow=emulator.dataset.flows[0].sid)
    t0 = emulator.now()
    originals = {r["sid"] for r in http.records(path, PageSize=1000)}
    assert len(originals) == 150

    emulator.advance(days=31)
    now = emulator.now()
    records = http.records(path, PageSize=1000)
    assert records, "new engagements arrived in 31 days"
    assert originals.isdisjoint(r["sid"] for r in records)
    assert all(t0 < parse_date(r["date_created"]) < now for r in records)
    assert min(parse_date(r["date_created"]) for r in records) >= now - RETENTION
    assert [r["sid"] for r in records] == visible_sids(emulator, 0)


GONE = [
    pytest.param("/v1/Flows/{flow}/Engagements/{sid}", id="v1_engagement_fetch"),
    pytest.param("/v1/Flows/{flow}/Engagements/{sid}/Context", id="v1_engagement_context"),
    pytest.param("/v1/Flows/{flow}/Engagements/{sid}/Steps", id="v1_engagement_steps"),
    pytest.param("/v1/Flows/{flow}/Engagements/{sid}/Steps/{step}", id="v1_engagement_step"),
    pytest.param("/v1/Flows/{flow}/Engagements/{sid}/Steps/{step}/Context", id="v1_engagement_step_context"),
    pytest.param("/v1/Flows/{flow}/Executions/{sid}", id="v1_execution_fetch"),
    pytest.param("/v2/Flows/{flow}/Executions/{sid}", id="v2_execution_fetch"),
    pytest.param("/v2/Flows/{flow}/Executions/{sid}/Context", id="v2_execution_context"),
    pytest.param("/v2/Flows/{flow}/Executions/{sid}/Steps/{step}/Context", id="v2_execution_step_context"),
]


@pytest.mark.parametrize("template", GONE)
def test_an_engagement_is_gone_30_days_after_it_started(emulator_factory: EmulatorFactory, template: str) -> None:
    emulator = emulator_factory(flows=1, engagements=50)
    dataset = emulator.dataset
    flow = dataset.flows[0]
    oldest = listed(emulator)[0]
    path = template.format(flow=flow.sid, sid=oldest.sid, step=oldest.steps[0].sid)
    http = StudioHttp(emulator.base_url)

    emulator.advance((oldest.date_created + RETENTION - emulator.now()).total_seconds())
    assert http.get(path).status_code == 200, "still there on the last second of retention"
    emulator.advance(1)
    r = http.get(path)
    assert (r.status_code, r.json()["code"]) == (404, 20404)
    assert oldest.sid not in visible_sids(emulator, 0)


# ------------------------------------------------------------------------ engagements progress
def test_active_engagements_end_later_with_a_later_date_updated(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(seed=3, flows=1, engagements=200, long_running_share=0.5)
    http = StudioHttp(emulator.base_url)
    flow = emulator.dataset.flows[0].sid
    first = {r["sid"]: r for r in http.records(f"/v1/Flows/{flow}/Engagements", PageSize=1000)}
    active = [sid for sid, r in first.items() if r["status"] == "active"]
    assert len(active) >= 5

    last = dict(first)
    at_start = {sid: len(http.records(f"/v1/Flows/{flow}/Engagements/{sid}/Steps")) for sid in active}
    step_counts = dict(at_start)
    ended: set[str] = set()
    for _ in range(14):
        emulator.advance(days=1)
        for sid in active:
            r = http.json(f"/v1/Flows/{flow}/Engagements/{sid}")
            before = last[sid]
            assert not (before["status"] == "ended" and r["status"] == "active"), "an ended engagement resumed"
            assert parse_date(r["date_updated"]) >= parse_date(before["date_updated"])
            steps = http.records(f"/v1/Flows/{flow}/Engagements/{sid}/Steps")
            assert len(steps) >= step_counts[sid], "an engagement lost steps"
            step_counts[sid] = len(steps)
            if r["status"] == "ended" and sid not in ended:
                ended.add(sid)
                assert parse_date(r["date_updated"]) > parse_date(first[sid]["date_updated"])
                assert r["date_updated"] == max(s["date_created"] for s in steps)
            last[sid] = r
    assert len(ended) >= len(active) // 2
    assert any(step_counts[sid] > at_start[sid] for sid in ended), "no engagement took a step while active"


def test_some_ended_engagements_have_a_null_date_updated(emulator_factory: EmulatorFactory) -> None:
    # flow 3 is the "api_notify" template, whose instant engagements end as Twilio's example does
    emulator = emulator_factory(seed=2, flows=3, engagements=200)
    http = StudioHttp(emulator.base_url)
    records = [r for f in emulator.dataset.flows for r in http.records(f"/v1/Flows/{f.sid}/Engagements", PageSize=1000)]
    null_updated = [r for r in records if r["date_updated"] is None]
    assert null_updated
    assert {r["status"] for r in null_updated} == {"ended"}
    assert len(null_updated) < len(records) // 10
    for r in null_updated[:3]:
        assert http.json(r["url"])["date_updated"] is None
        assert http.json(r["url"].replace("/v1/", "/v2/").replace("Engagements", "Executions"))["date_updated"] is None


@pytest.mark.parametrize(
    ("list_path", "context_path"),
    [
        pytest.param("/v1/Flows/{flow}/Engagements", "/v1/Flows/{flow}/Engagements/{sid}/Context",
                     id="v1_engagements"),
        pytest.param("/v2/Flows/{flow}/Executions", "/v2/Flows/{flow}/Executions/{sid}/Context",
                     id="v2_executions"),
    ],
)  # fmt: skip
def test_some_list_items_have_an_empty_context_that_the_context_endpoint_fills(
    emulator_factory: EmulatorFactory, list_path: str, context_path: str
) -> None:
    emulator = emulator_factory(seed=4, flows=2, engagements=200)
    http = StudioHttp(emulator.base_url)
    checked = 0
    for flow in emulator.dataset.flows:
        records = http.records(list_path.format(flow=flow.sid), PageSize=1000)
        hidden = [r for r in records if r["context"] == {}]
        assert 0 < len(hidden) < len(records) // 5
        for r in hidden:
            context = http.json(context_path.format(flow=flow.sid, sid=r["sid"]))["context"]
            assert sorted(context) == ["contact", "flow", "trigger", "widgets"]
            assert context["flow"]["sid"] == r["sid"]
            checked += 1
    assert checked > 0


# ------------------------------------------------------------------------ filters
WINDOWS = [
    pytest.param({"DateCreatedFrom": "2026-02-26T00:00:00Z", "DateCreatedTo": "2026-02-28T12:00:00Z"},
                 "2026-02-26T00:00:00Z", "2026-02-28T12:00:00Z", id="from_and_to_utc_z"),
    pytest.param({"DateCreatedFrom": "2026-02-26T00:00:00+00:00", "DateCreatedTo": "2026-02-28T12:00:00+00:00"},
                 "2026-02-26T00:00:00Z", "2026-02-28T12:00:00Z", id="from_and_to_utc_offset"),
    pytest.param({"DateCreatedFrom": "2026-02-25T19:00:00-05:00", "DateCreatedTo": "2026-02-28T07:00:00-05:00"},
                 "2026-02-26T00:00:00Z", "2026-02-28T12:00:00Z", id="from_and_to_minus_5_hours"),
    pytest.param({"DateCreatedFrom": "2026-03-01T00:00:00Z"}, "2026-03-01T00:00:00Z", None, id="from_only"),
    pytest.param({"DateCreatedTo": "2026-02-25T00:00:00Z"}, None, "2026-02-25T00:00:00Z", id="to_only"),
]  # fmt: skip


@pytest.mark.parametrize("path", ["/v1/Flows/{flow}/Executions", "/v2/Flows/{flow}/Executions"])
@pytest.mark.parametrize(("params", "since", "until"), WINDOWS)
def test_executions_list_honours_date_created_from_and_to(
    emulator_factory: EmulatorFactory, path: str, params: dict[str, str], since: str | None, until: str | None
) -> None:
    emulator = emulator_factory(seed=6, flows=1, engagements=200)
    http = StudioHttp(emulator.base_url)
    path = path.format(flow=emulator.dataset.flows[0].sid)
    everything = http.records(path, PageSize=1000)
    expected = [
        r["sid"]
        for r in everything
        if (since is None or r["date_created"] >= since) and (until is None or r["date_created"] < until)
    ]
    assert 0 < len(expected) < len(everything)
    assert [r["sid"] for r in http.records(path, PageSize=25, **params)] == expected


@pytest.mark.parametrize("status", ["active", "ended"])
def test_v2_status_filter_returns_only_that_status(emulator_factory: EmulatorFactory, status: str) -> None:
    emulator = emulator_factory(seed=6, flows=2, engagements=200, long_running_share=0.3)
    http = StudioHttp(emulator.base_url)
    found = 0
    for flow in emulator.dataset.flows:
        path = f"/v2/Flows/{flow.sid}/Executions"
        everything = http.records(path, PageSize=1000)
        filtered = http.records(path, PageSize=5, status=status)
        assert {r["status"] for r in filtered} <= {status}
        assert [r["sid"] for r in filtered] == [r["sid"] for r in everything if r["status"] == status]
        found += len(filtered)
    assert found > 0


# ------------------------------------------------------------------------ control endpoints
def test_post_clock_advance_moves_the_clock(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(flows=1, engagements=300)  # one engagement every ~34 minutes
    http = StudioHttp(emulator.base_url)
    flow = emulator.dataset.flows[0].sid
    t0 = emulator.now()
    before = http.records(f"/v1/Flows/{flow}/Engagements", PageSize=1000)

    r = requests.post(emulator.base_url + "/_emulator/clock", params={"advance": "3600"}, timeout=10)
    assert r.status_code == 200
    assert parse_date(r.json()["now"]) == t0 + timedelta(hours=1) == emulator.now()
    assert requests.get(emulator.base_url + "/_emulator/clock", timeout=10).json() == r.json()
    after = http.records(f"/v1/Flows/{flow}/Engagements", PageSize=1000)
    assert len(after) > len(before)
    assert [e["sid"] for e in after[-len(before) :]] == [e["sid"] for e in before]


@pytest.mark.parametrize(
    "advance",
    [
        pytest.param("-60", id="backwards"),
        pytest.param("soon", id="not_a_number"),
        pytest.param("nan", id="nan"),
        pytest.param("inf", id="infinite"),
        pytest.param("1e12", id="past_year_9999"),
    ],
)
def test_post_clock_rejects_a_bad_advance(emulator_factory: EmulatorFactory, advance: str) -> None:
    emulator = emulator_factory()
    t0 = emulator.now()
    r = requests.post(emulator.base_url + "/_emulator/clock", params={"advance": advance}, timeout=10)
    assert (r.status_code, r.json()["code"]) == (400, 20001)
    assert emulator.now() == t0
    assert StudioHttp(emulator.base_url).get("/v1/Flows").status_code == 200


def test_stats_count_the_api_requests(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory()
    flow = emulator.dataset.flows[0].sid
    http = StudioHttp(emulator.base_url)
    requests.post(emulator.base_url + "/_emulator/clock", params={"advance": "60"}, timeout=10)
    assert http.get("/v1/Flows").status_code == 200
    assert http.get(f"/v1/Flows/{flow}/Engagements").status_code == 200
    assert http.get("/v1/Flows/FW" + "0" * 32).status_code == 404
    assert StudioHttp(emulator.base_url, auth=None).get("/v1/Flows").status_code == 401

    stats = requests.get(emulator.base_url + "/_emulator/stats", timeout=10).json()
    assert stats == {"requests": 4, "by_status": {"200": 2, "404": 1, "401": 1}, "max_in_flight": 1}
    assert emulator.stats.paths == ["/v1/Flows", f"/v1/Flows/{flow}/Engagements", "/v1/Flows/FW" + "0" * 32,
                                    "/v1/Flows"]  # fmt: skip


def test_unknown_control_endpoint_answers_404(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory()
    r = requests.get(emulator.base_url + "/_emulator/reset", timeout=10)
    assert (r.status_code, r.json()["code"]) == (404, 20404)
