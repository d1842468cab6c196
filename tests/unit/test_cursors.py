"""Per-flow cursors: which records a run loads and where the next run starts (twilio_studio.cursors)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from twilio_studio.cursors import FlowCursor, FlowSelection, Window, cursor_of

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def record(sid: str, created: float, updated: float | None = None, status: str = "ended") -> dict[str, Any]:
    def text(m: float) -> str:
        return at(m).strftime("%Y-%m-%dT%H:%M:%SZ")

    return {"sid": sid, "status": status, "date_created": text(created),
            "date_updated": None if updated is None else text(updated)}  # fmt: skip


def walk(selection: FlowSelection, *pages: list[dict[str, Any]]) -> tuple[list[str], bool]:
    """The SIDs the selection loads, page by page (newest first), and whether it stopped early."""
    loaded = []
    for page in pages:
        for item in page:
            moment = cursor_of(item)
            assert moment is not None
            if selection.wanted(item, moment):
                loaded.append(item["sid"])
        if selection.end_page():
            return loaded, True
    return loaded, False


LIST = [record("c", 30, 40), record("b", 20, 20), record("a", 10)]  # newest first; `a` has no date_updated


@pytest.mark.parametrize(
    ("cursor", "window", "loaded"),
    [
        pytest.param(FlowCursor(None), Window(), ["c", "b", "a"], id="first-run-loads-all"),
        pytest.param(FlowCursor(None), Window(start_date=at(15)), ["c", "b"], id="first-run-from-start-date"),
        pytest.param(FlowCursor(at(20), {"b"}), Window(), ["c"], id="equal-time-already-loaded-skipped"),
        pytest.param(FlowCursor(at(20), {"x"}), Window(), ["c", "b"], id="equal-time-not-loaded-kept"),
        pytest.param(
            FlowCursor(at(20), {"b"}),
            Window(lookback=timedelta(minutes=15)),
            ["c", "b", "a"],
            id="lookback-rereads-behind-the-cursor",
        ),
        pytest.param(FlowCursor(at(40), {"c"}), Window(), [], id="nothing-new"),
        pytest.param(
            FlowCursor(None), Window(start_date=at(0), end_date=at(20)), ["a"], id="backfill-window-end-exclusive"
        ),
    ],
)
def test_which_records_a_run_loads(cursor: FlowCursor, window: Window, loaded: list[str]) -> None:
    assert walk(FlowSelection(cursor, window), LIST)[0] == loaded


def test_a_null_date_updated_counts_as_date_created() -> None:
    assert cursor_of(record("a", 10)) == at(10)
    assert cursor_of(record("a", 10, 12)) == at(12)


def test_the_next_cursor_is_the_newest_update_with_every_sid_at_it() -> None:
    selection = FlowSelection(FlowCursor(None), Window())
    walk(selection, [record("d", 30, 40), record("c", 25, 40, status="active"), record("b", 20, 20)])
    result = selection.result()
    assert (result.last_value, result.at_last) == (at(40), {"c", "d"})
    assert result.created_from == at(25)  # the oldest still active: nothing older can change


def test_created_from_is_the_newest_created_when_none_is_active() -> None:
    selection = FlowSelection(FlowCursor(None), Window())
    walk(selection, LIST)
    assert selection.result().created_from == at(30)


def test_a_backfill_keeps_the_saved_cursor() -> None:
    fresh = FlowCursor(None)
    selection = FlowSelection(fresh, Window(start_date=at(0), end_date=at(15)))
    assert walk(selection, LIST)[0] == ["a"]
    assert selection.result() is fresh  # the next regular run still starts from the beginning
    saved = FlowCursor(at(10), {"a"}, at(10))
    selection = FlowSelection(saved, Window(end_date=at(25)))
    assert walk(selection, LIST)[0] == ["b"]  # from the saved cursor up to end_date
    assert selection.result() is saved


def test_executions_ask_the_server_from_the_oldest_active_less_the_lookback() -> None:
    saved = FlowCursor(at(40), {"c"}, at(30))
    assert FlowSelection(saved, Window()).server_created_from() == "2026-11-01T12:30:00Z"
    assert FlowSelection(saved, Window(lookback=timedelta(minutes=5))).server_created_from() == "2026-11-01T12:25:00Z"
    assert FlowSelection(FlowCursor(None), Window()).server_created_from() is None


def test_stop_at_ended_stops_after_the_first_page_wholly_older_than_the_last_runs_oldest_active() -> None:
    saved = FlowCursor(at(100), set(), created_from=at(50))
    pages = [[record("f", 60, 100)], [record("e", 55), record("d", 45)], [record("c", 40)], [record("b", 30)]]
    selection = FlowSelection(saved, Window(), stop_at_ended=True)
    assert walk(selection, *pages[:2]) == (["f"], False)  # page 2 still holds one created after 50
    assert walk(selection, pages[2]) == ([], True)  # page 3 is wholly older: page 4 is never read
    assert walk(FlowSelection(saved, Window()), *pages) == (["f"], False)  # the option off: every page


def test_a_list_out_of_newest_first_order_is_read_to_the_end() -> None:
    saved = FlowCursor(at(100), set(), created_from=at(50))
    selection = FlowSelection(saved, Window(), stop_at_ended=True)
    pages = [[record("f", 60)], [record("c", 40), record("e", 55)], [record("b", 30)]]
    _, stopped = walk(selection, *pages)
    assert not stopped and selection.out_of_order


def test_cursors_round_trip_through_the_state() -> None:
    cursor = FlowCursor(at(40), {"b", "a"}, at(30))
    state = cursor.to_state()
    assert state == {
        "last_value": "2026-11-01T12:40:00Z",
        "at_last": ["a", "b"],
        "created_from": "2026-11-01T12:30:00Z",
    }
    assert FlowCursor.from_state(state) == cursor
    assert FlowCursor.from_state(None) == FlowCursor(None)
