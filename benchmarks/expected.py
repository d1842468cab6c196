"""What the emulator holds, computed from the same Dataset it serves: counts to verify loads against.

The emulator's data is a pure function of (seed, flows, engagements per flow, clock), so the harness
rebuilds the Dataset in its own process and counts without asking the server.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta

from twilio_studio.emulator.dataset import Dataset


def visible(dataset: Dataset, now: datetime) -> int:
    """Engagements the Engagements lists show at ``now`` (all flows)."""
    total = 0
    for flow in dataset.flows:
        lo, hi = dataset.index_range(flow, now)
        total += hi - lo
    return total


@dataclass
class ChangePlan:
    """How far to move the clock so that about ``share`` of the engagements change."""

    now: datetime
    advance_seconds: int
    visible_before: int
    visible_after: int
    new: int  # engagements created in [now, now + advance)
    updated: int  # engagements visible at now whose status or date_updated moves in (now, now + advance]

    @property
    def changed(self) -> int:
        """Engagements new or updated in the advance."""
        return self.new + self.updated


class ChangeModel:
    """Next change time of every engagement visible at ``now``, and creation times of later ones."""

    def __init__(self, dataset: Dataset, now: datetime, horizon: timedelta = timedelta(days=2)) -> None:
        self.dataset = dataset
        self.now = now
        self.visible_before = visible(dataset, now)
        next_changes: list[float] = []
        arrivals: list[float] = []
        for flow in dataset.flows:
            lo, hi = dataset.index_range(flow, now)
            for i in range(lo, hi):
                script = dataset._make_script(flow.index, i)  # uncached: the emulator's LRU stays small
                times = [s.at for s in script.steps if now < s.at <= script.ends_at]
                if script.ends_at > now:
                    times.append(script.ends_at)
                if times:
                    next_changes.append((min(times) - now).total_seconds())
            _, later = dataset.index_range(flow, now + horizon)
            arrivals.extend((dataset.created_at(flow, i) - now).total_seconds() for i in range(hi, later))
        self.next_changes = sorted(next_changes)
        self.arrivals = sorted(arrivals)
        self.horizon = horizon

    def plan(self, seconds: int) -> ChangePlan:
        """What an advance of ``seconds`` changes."""
        updated = bisect_right(self.next_changes, seconds)  # next change at or before now + seconds
        new = sum(1 for a in self.arrivals if a < seconds)  # created in [now, now + seconds)
        after = visible(self.dataset, self.now + timedelta(seconds=seconds))
        return ChangePlan(self.now, seconds, self.visible_before, after, new, updated)

    def advance_for(self, share: float) -> ChangePlan:
        """The smallest whole number of seconds that changes at least ``share`` of the engagements."""
        target = max(1, round(share * self.visible_before))
        lo, hi = 1, int(self.horizon.total_seconds())
        while lo < hi:
            mid = (lo + hi) // 2
            if self.plan(mid).changed >= target:
                hi = mid
            else:
                lo = mid + 1
        return self.plan(lo)


def pages_that_can_change(dataset: Dataset, before: datetime, after: datetime, page_size: int) -> int:
    """List pages (all flows) that can hold a change at ``after`` since a run at ``before``.

    Lists are newest first by ``date_created``; an engagement created before the oldest one still
    active at ``before`` had ended by then, and ended engagements never change. So a flow's pages
    that can hold changes are those down to the one holding that oldest active engagement (every
    page when none was active: then the newest at ``before`` marks the line). A walk with
    ``stop_at_ended_pages`` reads one page more per flow (the first one wholly older) and stops.
    """
    total = 0
    for flow in dataset.flows:
        lo, hi = dataset.index_range(flow, before)
        oldest_active = next((i for i in range(lo, hi) if dataset._make_script(flow.index, i).ends_at > before), None)
        line = oldest_active if oldest_active is not None else hi - 1
        lo_after, hi_after = dataset.index_range(flow, after)
        if hi_after <= lo_after:
            continue
        from_top = max(0, hi_after - 1 - max(line, lo_after))  # position of that engagement in the new list
        total += min(from_top // page_size + 1, -(-(hi_after - lo_after) // page_size))
    return total
