"""The incremental cursor, rule by rule: what each run writes, given what the list shows.

Each case is a sequence of runs against one flow on a loopback server; a run names the records the
list shows then (newest first), the source's options, and the SIDs it must write. The cursor is
``date_updated``, or ``date_created`` where Twilio leaves ``date_updated`` null, kept per flow with
the SIDs seen exactly at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.kit.duck import Loaded
from tests.kit.loopback import Answer, DynamicStudio, engagement, flow, page
from tests.kit.studio import make_source
from tests.kit.tables import engagement_cursors

FLOW = "FW" + "3" * 32
DAY = "2026-03-01T"


def at(n: int, updated: str | None, created: str | None = None, **extra: Any) -> dict[str, Any]:
    """Engagement ``n`` of FLOW, updated at ``DAY + updated`` (None: null), created at ``created`` or ``updated``."""
    created = created or updated
    assert created is not None
    date_updated = None if updated is None else DAY + updated + ":00Z"
    return engagement(FLOW, n, date_created=DAY + created + ":00Z", date_updated=date_updated, **extra)


@dataclass
class Run:
    """One run of the source: what the list shows, the options, what it must write."""

    shows: list[dict[str, Any]]  # the list's records (the server keeps Twilio's newest-first order)
    writes: set[int]  # engagement numbers this run writes
    options: dict[str, Any] = field(default_factory=dict)


def sid(n: int) -> str:
    return str(engagement(FLOW, n)["sid"])


def newest_first(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: r["date_created"], reverse=True)


class Listing:
    """A loopback Studio with one flow whose engagement list shows ``records``; it keeps every query."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.queries: list[dict[str, list[str]]] = []

    def respond(self, path: str) -> Answer:
        """The flow, its engagement or execution list (any query), 404 otherwise."""
        parts = urlsplit(path)
        if parts.path == f"/v1/Flows/{FLOW}":
            return Answer(200, flow(FLOW))
        if parts.path in (f"/v1/Flows/{FLOW}/Engagements", f"/v2/Flows/{FLOW}/Executions"):
            self.queries.append(parse_qs(parts.query))
            key = "engagements" if "Engagements" in parts.path else "executions"
            return Answer(200, page(key, newest_first(self.records), None))
        return Answer(404, {"code": 20404, "status": 404})


def written(loaded: Loaded, table: str = "engagements") -> set[str]:
    """The SIDs the last run wrote (its load ids are on the rows it wrote, merged or new)."""
    load_ids = loaded.pipeline.last_trace.last_load_info.loads_ids if loaded.pipeline.last_trace else []
    if not load_ids:
        return set()
    rows = loaded.sql(f"SELECT sid FROM {table} WHERE _dlt_load_id IN (SELECT unnest(?))", list(load_ids))
    return {r[0] for r in rows}


A10, B11 = at(1, "10:00"), at(2, "11:00")
CASES = {
    "unchanged_records_are_not_written_again": [
        Run([A10, B11], {1, 2}),
        Run([A10, B11], set()),
    ],
    "a_change_moves_a_record_past_the_cursor": [
        Run([A10, B11], {1, 2}),
        Run([at(1, "12:00", "10:00"), B11], {1}),
    ],
    "equal_timestamps_a_record_arriving_at_the_cursor_time_is_not_lost": [
        Run([A10, B11], {1, 2}),
        Run([A10, B11, at(3, "11:00")], {3}),  # same date_updated as the cursor: new, so written
    ],
    "an_older_change_than_the_cursor_is_missed_without_lookback": [
        Run([A10, B11], {1, 2}),
        Run([at(1, "10:30", "10:00"), B11], set()),
    ],
    "lookback_rereads_everything_within_it_of_the_cursor": [
        Run([A10, B11], {1, 2}),
        Run([at(1, "10:30", "10:00"), B11], {1, 2}, {"lookback_seconds": 3600}),
        Run([at(1, "10:30", "10:00"), B11], {1, 2}, {"lookback_seconds": 1800}),  # 10:30 is at the floor: in
        Run([at(1, "10:30", "10:00"), B11], {2}, {"lookback_seconds": 1200}),  # floor 10:40
    ],
    "null_date_updated_uses_date_created_as_the_cursor": [
        Run([at(1, None, "10:00"), B11], {1, 2}),
        Run([at(1, None, "10:00"), B11], set()),
        Run([at(1, None, "10:00"), B11, at(3, None, "11:30")], {3}),
    ],
    "start_date_bounds_the_first_run_only": [
        Run([A10, B11], {2}, {"start_date": DAY + "10:30:00Z"}),
        Run([A10, B11, at(3, "12:00")], {3}, {"start_date": DAY + "10:30:00Z"}),
    ],
    "a_backfill_window_loads_only_within_it_and_saves_no_cursor": [
        Run([A10, B11, at(3, "12:00")], {1}, {"start_date": DAY + "09:00:00Z", "end_date": DAY + "11:00:00Z"}),
        Run([A10, B11, at(3, "12:00")], {1, 2, 3}),  # no cursor was saved: a normal run loads everything
    ],
    "a_backfill_after_incremental_runs_keeps_their_cursor": [
        Run([A10, B11], {1, 2}),
        Run([A10, B11, at(3, "12:00")], set(), {"end_date": DAY + "11:30:00Z"}),
        Run([A10, B11, at(3, "12:00")], {3}),
    ],
}


@pytest.mark.parametrize("runs", list(CASES.values()), ids=list(CASES))
def test_each_run_writes_exactly_what_moved_past_the_cursor(loaded: Loaded, runs: list[Run]) -> None:
    listing = Listing()
    with DynamicStudio(listing.respond) as studio:
        for n, run in enumerate(runs, 1):
            listing.records = run.shows
            loaded.run(make_source(studio.base_url, flow_sids=[FLOW], **run.options).with_resources("engagements"))
            assert written(loaded) == {sid(i) for i in run.writes}, f"run {n}"


def test_the_cursor_is_the_newest_time_with_the_sids_seen_at_it(loaded: Loaded) -> None:
    listing = Listing()
    listing.records = [A10, B11, at(3, "11:00"), at(4, None, "10:30")]
    with DynamicStudio(listing.respond) as studio:
        loaded.run(make_source(studio.base_url, flow_sids=[FLOW]).with_resources("engagements"))
    cursor = engagement_cursors(loaded.pipeline)[FLOW]
    assert cursor["last_value"] == DAY + "11:00:00Z"
    assert sorted(cursor["at_last"]) == sorted([sid(2), sid(3)])


def execution(n: int, status: str, created: str) -> dict[str, Any]:
    return at(n, created, created, status=status, flow_version=1, initiated_by="FC" + "0" * 32)


@pytest.mark.parametrize(
    ("first", "lookback", "created_from"),
    [
        pytest.param([execution(1, "ended", "09:00"), execution(2, "active", "10:00"), execution(3, "ended", "11:00")],
                     0, DAY + "10:00:00Z", id="the_oldest_active_one"),
        pytest.param([execution(1, "ended", "09:00"), execution(3, "ended", "11:00")],
                     0, DAY + "11:00:00Z", id="none_active_the_newest"),
        pytest.param([execution(1, "ended", "09:00"), execution(2, "active", "10:00")],
                     600, DAY + "09:50:00Z", id="minus_the_lookback"),
    ],
)  # fmt: skip
def test_executions_are_asked_for_from_the_oldest_active_one_on(
    loaded: Loaded, first: list[dict[str, Any]], lookback: int, created_from: str
) -> None:
    listing = Listing()
    listing.records = first
    options: dict[str, Any] = {"flow_sids": [FLOW], "lookback_seconds": lookback}
    with DynamicStudio(listing.respond) as studio:
        loaded.run(make_source(studio.base_url, **options).with_resources("executions"))
        assert written(loaded, "executions") == {r["sid"] for r in first}
        assert "DateCreatedFrom" not in listing.queries[-1]  # the first run reads the whole list
        loaded.run(make_source(studio.base_url, **options).with_resources("executions"))
    assert listing.queries[-1]["DateCreatedFrom"] == [created_from]
