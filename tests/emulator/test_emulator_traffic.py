"""Shaped traffic: flows that differ tenfold, hours of the day, weekdays and bursts, the same for a seed."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime, timedelta

import pytest

from tests.kit.spec import StudioHttp, visible_sids
from twilio_studio.emulator import Dataset, Emulator

SPAN = timedelta(days=21)


@pytest.fixture(scope="module")
def shaped() -> Dataset:
    return Dataset(seed=7, flows=4, engagements_per_flow=2000, span=SPAN, traffic="shaped")


def created(d: Dataset, flow_index: int) -> list[datetime]:
    flow = d.flows[flow_index]
    return [d.created_at(flow, i) for i in range(*d.index_range(flow, d.start))]


def test_flat_traffic_is_unchanged_by_default() -> None:
    d = Dataset(seed=7, flows=3, engagements_per_flow=200)
    assert d.traffic == "flat"
    assert [hi - lo for lo, hi in (d.index_range(f, d.start) for f in d.flows)] == [200, 200, 200]


def test_total_is_kept_and_flows_differ_tenfold(shaped: Dataset) -> None:
    counts = [len(created(shaped, i)) for i in range(4)]
    assert sum(counts) == 4 * 2000
    assert max(counts) >= 9.5 * min(counts)


def test_calls_follow_office_hours_and_weekdays(shaped: Dataset) -> None:
    ivr = created(shaped, 1)  # ivr_menu: calls
    assert shaped.flows[1].template == "ivr_menu"
    hours = Counter(t.hour for t in ivr)
    assert sum(hours[h] for h in range(9, 17)) > 8 * sum(hours[h] for h in (0, 1, 2, 3, 4, 22, 23))
    weekdays = Counter(t.weekday() for t in ivr)
    assert min(weekdays[d] for d in range(5)) > 2 * max(weekdays[5], weekdays[6])


def test_some_hours_burst(shaped: Dataset) -> None:
    per_hour = Counter(t.replace(minute=0, second=0) for t in created(shaped, 0))
    assert max(per_hour.values()) > 4 * statistics.median(per_hour.values())


def test_creation_times_never_decrease_and_index_lookup_is_exact(shaped: Dataset) -> None:
    for flow in shaped.flows:
        lo, hi = shaped.index_range(flow, shaped.start)
        times = [shaped.created_at(flow, i) for i in range(lo, hi + 50)]
        assert times == sorted(times)
        for probe in times[:: max(1, len(times) // 40)]:
            first = shaped._first_index_at_or_after(flow, probe)
            assert shaped.created_at(flow, first) >= probe
            assert first == 0 or shaped.created_at(flow, first - 1) < probe


def test_same_seed_same_traffic_other_seed_other_traffic() -> None:
    a, b, c = (Dataset(seed=s, flows=2, engagements_per_flow=300, traffic="shaped") for s in (3, 3, 4))
    assert created(a, 0) == created(b, 0) != created(c, 0)


def test_the_emulator_serves_shaped_traffic_consistently() -> None:
    d = Dataset(seed=2, flows=3, engagements_per_flow=300, traffic="shaped")
    with Emulator(d) as emu:
        http = StudioHttp(emu.base_url)
        for flow in d.flows:
            listed = http.records(f"/v1/Flows/{flow.sid}/Engagements", PageSize=100)
            assert [e["sid"] for e in listed] == visible_sids(emu, flow.index)
            window = {"DateCreatedFrom": "2026-02-26T00:00:00Z", "DateCreatedTo": "2026-02-28T00:00:00Z"}
            executions = http.records(f"/v2/Flows/{flow.sid}/Executions", PageSize=100, **window)
            want = [e["sid"] for e in listed if "2026-02-26" <= e["date_created"] < "2026-02-28"]
            assert [e["sid"] for e in executions] == want and want


def test_unknown_traffic_is_refused() -> None:
    with pytest.raises(ValueError, match="traffic must be 'flat' or 'shaped', got 'spiky'"):
        Dataset(traffic="spiky")
