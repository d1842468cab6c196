"""Per-flow cursors: which records of a flow's list a run loads, and where the next run starts.

Cursors are kept per flow in the resource state (not one dlt ``incremental`` for the resource): a
flow added later, or loaded on its own with ``flow_sids``, must start from its own beginning
instead of from another flow's high-water mark. The cursor of a record is its ``date_updated``, or
its ``date_created`` where that is null. Lists are newest first by ``date_created`` (Twilio's
order, unconfirmed: ``stop_at_ended_pages`` relies on it only while it is seen to hold).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from twilio_studio.context import parse_time


def iso(value: datetime | None) -> str | None:
    """A time as Twilio writes it (``2026-11-01T12:00:00Z``), None as None."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def cursor_of(item: dict[str, Any]) -> datetime | None:
    """A record's cursor: its ``date_updated``, or its ``date_created`` where that is null."""
    return parse_time(item.get("date_updated") or item.get("date_created"))


@dataclass(frozen=True)
class Window:
    """Which records a run loads, by cursor."""

    start_date: datetime | None = None  # first run of a flow: load from here
    end_date: datetime | None = None  # backfill: load up to here (exclusive), keep saved cursors
    lookback: timedelta = timedelta(0)  # re-read this far behind the saved cursor (late updates)


@dataclass
class FlowCursor:
    """A flow's high-water mark and the SIDs seen exactly at it (so equal times are not lost)."""

    last_value: datetime | None
    at_last: set[str] = field(default_factory=set)
    # the oldest record still active at the last run (else the newest seen): executions ask the
    # server only for those created from here on (DateCreatedFrom), since ended ones never change,
    # and stop_at_ended_pages stops a walk at the first page wholly older than it
    created_from: datetime | None = None

    @classmethod
    def from_state(cls, raw: dict[str, Any] | None) -> FlowCursor:
        """The cursor saved in the resource state (``to_state``), or none yet."""
        if not raw:
            return cls(None)
        return cls(parse_time(raw.get("last_value")), set(raw.get("at_last", [])), parse_time(raw.get("created_from")))

    def to_state(self) -> dict[str, Any]:
        """The cursor as the resource state keeps it: ISO times, SIDs sorted."""
        return {
            "last_value": iso(self.last_value),
            "at_last": sorted(self.at_last),
            "created_from": iso(self.created_from),
        }


class FlowSelection:
    """One walk of one flow's list: which records the run loads, and the next cursor.

    It decides for each record whether this run loads it, follows the new high-water mark, and
    says when the rest of the list cannot hold changes.

    Loaded: records at or after the saved cursor less ``lookback`` (``start_date`` on a first run),
    except, without a lookback, those exactly at the saved cursor that the last run already loaded;
    with a backfill ``end_date``, only those before it, and the saved cursor stays where it was.
    """

    def __init__(self, cursor: FlowCursor, window: Window, stop_at_ended: bool = False) -> None:
        self.cursor, self.window = cursor, window
        floor = cursor.last_value if cursor.last_value is not None else window.start_date
        if floor is not None and cursor.last_value is not None:
            floor = floor - window.lookback
        self.floor = floor
        self.strict = cursor.last_value is not None and window.lookback == timedelta(0)
        self.new_last, self.new_at_last = cursor.last_value, set(cursor.at_last)
        self.oldest_active: datetime | None = None
        self.newest: datetime | None = cursor.created_from
        # the walk may stop early only while the list keeps the newest-first order
        started = cursor.created_from
        self.stop_before = started - window.lookback if stop_at_ended and started is not None else None
        self.out_of_order = False  # seen once: stop_at_ended_pages no longer applies to this flow
        self._previous: datetime | None = None
        self._page_newest: datetime | None = None

    def server_created_from(self) -> str | None:
        """DateCreatedFrom for a list that accepts it (executions): nothing older can have changed."""
        if self.cursor.created_from is None:
            return None
        return iso(self.cursor.created_from - self.window.lookback)

    def wanted(self, item: dict[str, Any], at: datetime) -> bool:
        """Whether this run loads the record whose cursor is ``at`` (seen in list order)."""
        created = parse_time(item.get("date_created")) or at
        self.newest = created if self.newest is None else max(self.newest, created)
        self._page_newest = created if self._page_newest is None else max(self._page_newest, created)
        if self.stop_before is not None and self._previous is not None and created > self._previous:
            self.stop_before, self.out_of_order = None, True
        self._previous = created
        if item.get("status") == "active":
            self.oldest_active = created if self.oldest_active is None else min(self.oldest_active, created)
        window = self.window
        if window.end_date is None and (self.new_last is None or at >= self.new_last):
            if self.new_last is None or at > self.new_last:
                self.new_last, self.new_at_last = at, set()
            self.new_at_last.add(item["sid"])
        if window.end_date is not None and at >= window.end_date:
            return False
        floor = self.floor
        if floor is None:
            return True
        return not (at < floor or (self.strict and at == floor and item["sid"] in self.cursor.at_last))

    def end_page(self) -> bool:
        """Ends a page; True if every later page is older still (all ended before the last run).

        Only with ``stop_at_ended``, and only while the list is seen in newest-first order.
        """
        newest, self._page_newest = self._page_newest, None
        return self.stop_before is not None and newest is not None and newest < self.stop_before

    def result(self) -> FlowCursor:
        """The cursor to save once the whole list is walked (a backfill keeps the saved one)."""
        if self.window.end_date is not None:
            return self.cursor
        started = self.oldest_active if self.oldest_active is not None else self.newest
        return FlowCursor(self.new_last, self.new_at_last, started)
