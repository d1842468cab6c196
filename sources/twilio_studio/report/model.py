"""What the report shows, as plain data.

``build_report`` (``queries``) fills a ``ReportData``, the renderers (``text``, ``page``) only
format it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone

from twilio_studio.report.graphs import FlowGraph

ALL_FLOWS = None  # the flow_sid of rows that cover every flow
# Upper bounds (seconds) of the duration histogram's buckets; the last bucket is open-ended.
DURATION_BUCKETS: tuple[tuple[float | None, str], ...] = (
    (60, "< 1 min"),
    (600, "1-10 min"),
    (3_600, "10-60 min"),
    (86_400, "1-24 h"),
    (None, ">= 1 day"),
)


@dataclass(frozen=True)
class DayCount:
    """Engagements created on one UTC day in one flow."""

    day: date
    flow_sid: str
    count: int


@dataclass(frozen=True)
class StatusShare:
    """How many engagements of a flow (or of all flows: ``flow_sid`` None) have one status."""

    flow_sid: str | None
    status: str
    count: int
    percent: float


@dataclass(frozen=True)
class DurationStats:
    """Seconds from date_created to date_updated of ended engagements, per flow or overall (None)."""

    flow_sid: str | None
    count: int
    median_seconds: float
    p90_seconds: float
    mean_seconds: float


@dataclass(frozen=True)
class DurationBucket:
    """How many ended engagements of a flow took a time within one histogram bucket."""

    flow_sid: str
    label: str
    count: int


@dataclass(frozen=True)
class FunnelStep:
    """One widget of a flow: engagements that reached it, and ended engagements that stopped there.

    ``stopped`` counts ended engagements whose last widget reached (highest position) is this one.
    """

    flow_sid: str
    widget: str
    typical_position: float
    reached: int
    stopped: int


@dataclass(frozen=True)
class PathStep:
    """Steps of one flow that executed ``from_widget`` and went on to ``to_widget``: one edge of its path graph.

    As Twilio's spec defines a step: ``from_widget`` is its ``transitioned_from``, the widget that ran
    (``Trigger`` for an engagement's first step), ``to_widget`` its ``transitioned_to``, the widget
    that ran next (``Ended`` where the engagement ended); ``percent`` is of all the flow's steps.
    """

    flow_sid: str
    from_widget: str | None
    to_widget: str | None
    count: int
    percent: float


@dataclass(frozen=True)
class TopValue:
    """A frequent value of one flow-data key (scalar keys only); ``percent`` of that key's rows."""

    flow_sid: str
    key: str
    value: str | None
    count: int
    percent: float


@dataclass(frozen=True)
class Transition:
    """Versions of one flow's engagements with one UTC day (by version time) and one status change.

    ``from_status`` is the status of the same engagement's previous version by version time, or
    ``new`` for its first version; a version whose status did not change (``active`` -> ``active``:
    the engagement moved on to other widgets) counts as well, so every version counts once.
    """

    day: date
    flow_sid: str
    from_status: str
    to_status: str
    count: int


@dataclass(frozen=True)
class ActiveTime:
    """Engagements of one flow whose first active -> ended version has its version time on one UTC day.

    ``median_hours`` is the median of the hours from the engagement's date_created to the date_updated
    of that ended version; ``count`` is how many such engagements have both times.
    """

    day: date
    flow_sid: str
    count: int
    median_hours: float


@dataclass
class ReportData:
    """Everything the report shows; the renderers only format it."""

    dataset: str
    top_n: int
    flow_names: dict[str, str]
    total_engagements: int
    per_day: list[DayCount]
    status: list[StatusShare]
    durations: list[DurationStats]
    duration_buckets: list[DurationBucket]
    funnel: list[FunnelStep]
    funnel_entered: dict[str, int]
    paths: list[PathStep]
    """The ``top_n`` most common transitions per flow, most common first; empty without steps."""
    top_values: list[TopValue]
    version_column: str | None
    """``valid_from`` (scd2), ``snapshot_at`` (append) or None: the dataset holds only the latest state."""
    transitions: list[Transition]
    active_times: list[ActiveTime]
    notes: dict[str, str] = field(default_factory=dict)
    generated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc), compare=False)
    graphs: list[FlowGraph] = field(default_factory=list)
    """Per flow: the design of the revision most engagements ran, with counts and drop-off."""

    def flow_name(self, flow_sid: str | None) -> str:
        """The flow's friendly name, its sid when the flows table lacks it, or "All flows"."""
        if flow_sid is None:
            return "All flows"
        return self.flow_names.get(flow_sid) or flow_sid

    def flow_sids(self) -> list[str]:
        """Every flow with engagements or a name, ordered by name."""
        sids = set(self.flow_names) | {d.flow_sid for d in self.per_day}
        sids |= {s.flow_sid for s in self.status if s.flow_sid is not None}
        sids |= {t.flow_sid for t in self.transitions}
        sids |= {p.flow_sid for p in self.paths}
        return sorted(sids, key=lambda s: (self.flow_name(s), s))
