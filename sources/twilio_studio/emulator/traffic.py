"""Traffic with the shape of real traffic: flows that differ tenfold in volume, hours, weekdays, bursts.

``Dataset(traffic="shaped")`` places a flow's engagements along an hourly intensity instead of at a
fixed spacing: each hour weighs (hour-of-day profile of the flow's kind) x (weekday or weekend) x
(a burst on some days: a campaign, an outage). Engagement ``i`` sits at weight ``(i + u_i) * c``
of the cumulative intensity (``u_i`` a fixed jitter), so creation times never decrease with ``i``,
and an index is found from a time with a binary search over day totals. All of it derives from
the seed: the same seed gives the same traffic.
"""

from __future__ import annotations

import bisect
import hashlib
from datetime import datetime, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# Relative volume by UTC hour of day, by the flow's kind (calls in office hours, messages into the evening).
HOURLY: dict[str, tuple[float, ...]] = {
    "call": (0.05, 0.03, 0.03, 0.03, 0.05, 0.1, 0.3, 0.8, 1.6, 2.2, 2.4, 2.3,
             2.0, 2.2, 2.3, 2.1, 1.8, 1.3, 0.7, 0.4, 0.25, 0.15, 0.1, 0.07),
    "message": (0.2, 0.1, 0.06, 0.05, 0.05, 0.1, 0.3, 0.6, 1.0, 1.3, 1.4, 1.5,
                1.6, 1.5, 1.4, 1.4, 1.5, 1.7, 1.9, 2.0, 1.9, 1.5, 0.9, 0.5),
    "request": (0.5, 0.4, 0.4, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.3, 1.3, 1.3,
                1.3, 1.3, 1.3, 1.3, 1.2, 1.2, 1.1, 1.0, 0.9, 0.8, 0.7, 0.6),
}  # fmt: skip
WEEKDAY: dict[str, tuple[float, ...]] = {  # Monday first
    "call": (1.2, 1.1, 1.0, 1.0, 1.0, 0.35, 0.2),
    "message": (1.0, 1.0, 1.0, 1.0, 1.1, 0.9, 0.8),
    "request": (1.1, 1.1, 1.1, 1.1, 1.0, 0.6, 0.5),
}
BURST_EVERY_DAYS = 5  # about one day in five has a burst ...
BURST_HOURS = 3  # ... of three hours ...
BURST_FACTOR = 6.0  # ... at six times the usual volume


def volume(flow_index: int) -> float:
    """A flow's relative volume: flows 0 to 3 span tenfold (3.16, 1.47, 0.68, 0.32), then repeat."""
    return float(10 ** (0.5 - (flow_index % 4) / 3))


def shaped_counts(flows: int, per_flow: int) -> list[int]:
    """Engagements per flow by volume, summing to ``flows * per_flow`` (largest remainders round up)."""
    volumes = [volume(i) for i in range(flows)]
    total, scale = flows * per_flow, sum(volumes) or 1.0
    exact = [total * v / scale for v in volumes]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(flows), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _unit(*parts: object) -> float:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Shape:
    """Creation times of one flow's engagements along its hourly intensity."""

    def __init__(self, seed: int, flow_index: int, kind: str, base: datetime, start: datetime, count: int) -> None:
        self.seed, self.flow_index = seed, flow_index
        self.hourly, self.weekday = HOURLY[kind], WEEKDAY[kind]
        self.epoch = base.replace(hour=0, minute=0, second=0, microsecond=0)  # day 0 starts at midnight UTC
        self._day_start: list[float] = [0.0]  # cumulative weight at the start of day d
        self._hours: dict[int, tuple[float, ...]] = {}
        # weight per engagement: `count` engagements are created in [base, start)
        span = self.weight_at(start) - self.weight_at(base)
        self.base_weight = self.weight_at(base)
        self.per_engagement = span / max(1, count) if span > 0 else 1.0

    # ---------------------------------------------------------------- intensity
    def hours(self, day: int) -> tuple[float, ...]:
        """The weight of each hour of day ``day`` (0 = the epoch's day)."""
        cached = self._hours.get(day)
        if cached is not None:
            return cached
        weekday = (self.epoch + day * DAY).weekday()
        out = [h * self.weekday[weekday] for h in self.hourly]
        if _unit(self.seed, self.flow_index, day, "burst") < 1 / BURST_EVERY_DAYS:
            first = int(_unit(self.seed, self.flow_index, day, "burst_hour") * (24 - BURST_HOURS))
            for h in range(first, first + BURST_HOURS):
                out[h] *= BURST_FACTOR
        self._hours[day] = result = tuple(out)
        return result

    def _extend(self, day: int) -> None:
        while len(self._day_start) <= day + 1:
            d = len(self._day_start) - 1
            self._day_start.append(self._day_start[-1] + sum(self.hours(d)))

    def weight_at(self, ts: datetime) -> float:
        """The cumulative weight from the epoch to ``ts`` (0 before it)."""
        offset = (ts - self.epoch).total_seconds()
        if offset <= 0:
            return 0.0
        day, rest = divmod(offset, 86_400)
        self._extend(int(day))
        hours = self.hours(int(day))
        hour, seconds = divmod(rest, 3_600)
        return self._day_start[int(day)] + sum(hours[: int(hour)]) + hours[int(hour)] * seconds / 3_600

    def time_at(self, weight: float) -> datetime:
        """The earliest time the cumulative weight reaches ``weight`` (whole seconds, rounded down)."""
        while self._day_start[-1] < weight:
            self._extend(len(self._day_start) - 1)
        day = max(0, bisect.bisect_right(self._day_start, weight) - 1)
        left = weight - self._day_start[day]
        seconds = day * 86_400.0
        for w in self.hours(day):
            if left <= w:
                seconds += 3_600 * left / w
                break
            left -= w
            seconds += 3_600
        return self.epoch + timedelta(seconds=int(seconds))

    # ---------------------------------------------------------------- engagements
    def created_at(self, i: int) -> datetime:
        """When engagement ``i`` of the flow was created."""
        jitter = _unit(self.seed, self.flow_index, i, "jitter")
        return self.time_at(self.base_weight + (i + jitter) * self.per_engagement)

    def first_index_at_or_after(self, ts: datetime) -> int:
        """Smallest ``i`` whose creation time is >= ``ts`` (creation times never decrease with ``i``)."""
        guess = int((self.weight_at(ts) - self.base_weight) // self.per_engagement)
        i = max(0, guess)
        while i > 0 and self.created_at(i - 1) >= ts:
            i -= 1
        while self.created_at(i) < ts:
            i += 1
        return i
