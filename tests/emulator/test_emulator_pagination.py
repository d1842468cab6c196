"""Pagination while data changes: no skip, no repeat, and previous_page_url leads back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.kit.spec import StudioHttp, parse_date, visible_sids
from tests.kit.studio import EmulatorFactory
from twilio_studio.emulator import Emulator

PAGE_SIZE = 10


def _walk(emulator: Emulator, path: str, between_pages: timedelta, **params: Any) -> list[dict[str, Any]]:
    """Follows next_page_url from the first page, moving the clock before each next page."""
    http = StudioHttp(emulator.base_url)
    body = http.json(path, PageSize=PAGE_SIZE, **params)
    records = list(body[body["meta"]["key"]])
    for _ in range(1000):
        if body["meta"]["next_page_url"] is None:
            return records
        emulator.advance(between_pages.total_seconds())
        body = http.json(body["meta"]["next_page_url"])
        records.extend(body[body["meta"]["key"]])
    raise AssertionError("the walk did not end after 1000 pages")


@pytest.mark.parametrize(
    "between_pages",
    [
        pytest.param(timedelta(0), id="clock_still"),
        pytest.param(timedelta(minutes=30), id="30_minutes_per_page"),
        pytest.param(timedelta(hours=6), id="6_hours_per_page"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/Flows/{flow}/Engagements", "/v2/Flows/{flow}/Executions"])
def test_a_walk_while_engagements_arrive_returns_exactly_those_visible_at_its_start(
    emulator_factory: EmulatorFactory, between_pages: timedelta, path: str
) -> None:
    emulator = emulator_factory(seed=5, flows=1, engagements=300, long_running_share=0.4)
    at_start = visible_sids(emulator, 0)
    records = _walk(emulator, path.format(flow=emulator.dataset.flows[0].sid), between_pages)
    sids = [r["sid"] for r in records]

    at_end = visible_sids(emulator, 0)
    assert set(at_start) <= set(at_end), "premise: nothing left retention during the walk"
    if between_pages:
        assert len(set(at_end) - set(at_start)) >= 10, "premise: new engagements arrived during the walk"
    assert len(sids) == len(set(sids)), "an engagement was listed twice"
    assert sids == at_start
    created = [parse_date(r["date_created"]) for r in records]
    assert created == sorted(created, reverse=True)


def test_a_walk_across_retention_never_repeats_nor_invents(emulator_factory: EmulatorFactory) -> None:
    """Two days per page: the oldest engagements leave retention before the walk reaches them."""
    emulator = emulator_factory(seed=5, flows=1, engagements=300)
    at_start = visible_sids(emulator, 0)
    records = _walk(emulator, f"/v1/Flows/{emulator.dataset.flows[0].sid}/Engagements", timedelta(days=2))
    sids = [r["sid"] for r in records]
    assert len(sids) == len(set(sids))
    assert set(sids) <= set(at_start)
    assert set(at_start) & set(visible_sids(emulator, 0)) <= set(sids)
    assert 0 < len(sids) < len(at_start), "premise: some engagements expired during the walk"
    assert sids == at_start[: len(sids)], "the walk skipped an engagement that was still visible"


def test_engagements_progress_during_a_walk(emulator_factory: EmulatorFactory) -> None:
    """Records read later in a walk show their state at the time of reading, as Twilio's do."""
    emulator = emulator_factory(seed=5, flows=1, engagements=300, long_running_share=0.4)
    flow = emulator.dataset.flows[0]
    http = StudioHttp(emulator.base_url)
    path = f"/v1/Flows/{flow.sid}/Engagements"
    before = {r["sid"]: r for r in http.records(path, PageSize=1000)}
    records = _walk(emulator, path, timedelta(hours=6))
    ended_during_walk = [r for r in records if before[r["sid"]]["status"] == "active" and r["status"] == "ended"]
    assert ended_during_walk
    for r in ended_during_walk:
        assert parse_date(r["date_updated"]) > parse_date(before[r["sid"]]["date_updated"])


@pytest.mark.parametrize(
    "between_pages",
    [pytest.param(timedelta(0), id="clock_still"), pytest.param(timedelta(hours=1), id="one_hour_per_page")],
)
@pytest.mark.parametrize(
    "path",
    ["/v1/Flows/{flow}/Engagements", "/v1/Flows/{flow}/Executions", "/v2/Flows/{flow}/Executions"],
)
def test_previous_page_url_leads_back_to_the_previous_page(
    emulator_factory: EmulatorFactory, between_pages: timedelta, path: str
) -> None:
    emulator = emulator_factory(seed=9, flows=1, engagements=200)
    http = StudioHttp(emulator.base_url)
    body = http.json(path.format(flow=emulator.dataset.flows[0].sid), PageSize=PAGE_SIZE)
    key = body["meta"]["key"]
    assert body["meta"]["previous_page_url"] is None
    pages = [body]
    while body["meta"]["next_page_url"] is not None:
        emulator.advance(between_pages.total_seconds())
        body = http.json(body["meta"]["next_page_url"])
        pages.append(body)
    assert len(pages) == 20
    for n in range(1, len(pages)):
        back = http.json(pages[n]["meta"]["previous_page_url"])
        assert back["meta"]["page"] == n - 1
        assert [r["sid"] for r in back[key]] == [r["sid"] for r in pages[n - 1][key]]
        assert back["meta"]["next_page_url"] is not None
    assert http.json(pages[1]["meta"]["previous_page_url"])["meta"]["previous_page_url"] is None


def test_the_last_page_has_a_null_next_page_url(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(flows=1, engagements=25)
    http = StudioHttp(emulator.base_url)
    pages = list(http.pages(f"/v1/Flows/{emulator.dataset.flows[0].sid}/Engagements", PageSize=10))
    assert [len(p["engagements"]) for p in pages] == [10, 10, 5]
    assert [p["meta"]["page"] for p in pages] == [0, 1, 2]
    assert [p["meta"]["next_page_url"] is None for p in pages] == [False, False, True]


def test_filters_survive_pagination(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(seed=5, flows=1, engagements=300, long_running_share=0.4)
    http = StudioHttp(emulator.base_url)
    path = f"/v2/Flows/{emulator.dataset.flows[0].sid}/Executions"
    window = {"DateCreatedFrom": "2026-02-25T00:00:00Z", "DateCreatedTo": "2026-03-01T00:00:00Z"}
    everything = http.records(path, PageSize=1000)
    pages = list(http.pages(path, PageSize=7, status="ended", **window))
    assert len(pages) > 3
    for page in pages[1:]:
        assert "status=ended" in page["meta"]["url"]
        assert "DateCreatedFrom=2026-02-25T00%3A00%3A00Z" in page["meta"]["url"]
    expected = [
        r["sid"] for r in everything if r["status"] == "ended" and "2026-02-25" <= r["date_created"] < "2026-03-01"
    ]
    assert [r["sid"] for p in pages for r in p["executions"]] == expected
