"""The report's tables, in the order and with the titles, headers and notes both renderers show.

``text`` shows them as fixed-width columns, ``page`` as HTML: the one place that turns
``ReportData`` into text.
"""

from __future__ import annotations

from dataclasses import dataclass

from twilio_studio.report.graphs import FlowGraph, edge_label, edge_shown
from twilio_studio.report.model import ReportData


@dataclass(frozen=True)
class Table:
    """A table as both renderers show it: a title, headers, rows of text, right-aligned columns."""

    title: str
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]
    numeric: frozenset[int] = frozenset()
    note: str | None = None


def duration_text(seconds: float) -> str:
    """Seconds in the unit that reads best: ``45 s``, ``12.5 min``, ``3.0 h``, ``2.1 d``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3_600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86_400:
        return f"{seconds / 3_600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def tables(data: ReportData) -> list[Table]:
    """The report's tables, in the order both renderers show them."""
    name = data.flow_name
    flows = Table(
        "Flows",
        ("Flow", "SID", "Engagements"),
        [(name(sid), sid, str(sum(s.count for s in data.status if s.flow_sid == sid))) for sid in data.flow_sids()],
        frozenset({2}),
    )
    per_day = per_day_table(data)
    status = Table(
        "Status share",
        ("Flow", "Status", "Engagements", "Percent"),
        [(name(s.flow_sid), s.status, str(s.count), f"{s.percent:.1f} %") for s in data.status],
        frozenset({2, 3}),
    )
    durations = Table(
        "Time from created to last update (ended engagements)",
        ("Flow", "Count", "Median", "p90", "Mean"),
        [
            (
                name(d.flow_sid),
                str(d.count),
                duration_text(d.median_seconds),
                duration_text(d.p90_seconds),
                duration_text(d.mean_seconds),
            )
            for d in data.durations
        ],
        frozenset({1, 2, 3, 4}),
        data.notes.get("durations"),
    )
    funnel = Table(
        "Widget funnel (reached: engagements that reached the widget; stopped: ended ones whose last widget it was)",
        ("Flow", "Widget", "Reached", "Reached %", "Stopped"),
        [
            (
                name(f.flow_sid),
                f.widget,
                str(f.reached),
                f"{100.0 * f.reached / max(1, data.funnel_entered.get(f.flow_sid, 0)):.1f} %",
                str(f.stopped),
            )
            for f in data.funnel
        ],
        frozenset({2, 3, 4}),
        data.notes.get("funnel"),
    )
    paths = Table(
        f"Widget paths: the {data.top_n} most common transitions per flow (percent of the flow's steps)",
        ("Flow", "Widget that ran", "Went to", "Steps", "Percent"),
        [
            (
                name(p.flow_sid),
                widget_label(p.from_widget),
                widget_label(p.to_widget),
                str(p.count),
                f"{p.percent:.1f} %",
            )
            for p in data.paths
        ],
        frozenset({3, 4}),
        data.notes.get("paths"),
    )
    top = Table(
        f"Top {data.top_n} flow-data values per key (scalar keys)",
        ("Flow", "Key", "Value", "Count", "Percent"),
        [
            (name(v.flow_sid), v.key, "(null)" if v.value is None else v.value, str(v.count), f"{v.percent:.1f} %")
            for v in data.top_values
        ],
        frozenset({3, 4}),
        data.notes.get("top_values"),
    )
    return [flows, per_day, status, durations, funnel, paths, top, *history_tables(data)]


def graph_title(data: ReportData, g: FlowGraph) -> str:
    """The heading of one flow's graph: its name, revision and how many engagements ran it."""
    return (
        f"Flow graph: {data.flow_name(g.flow_sid)}, revision {g.revision} "
        f"({g.engagements} of {g.all_engagements} engagements ran it)"
    )


def graph_tables(data: ReportData) -> list[Table]:
    """Per flow: each state of the design, its transitions taken and its drop-off by widget type."""
    out = []
    for g in data.graphs:
        note = data.notes.get("graphs")
        if g.hidden_states:
            hidden = (
                f"{g.hidden_states} states that no engagement reached (or beyond the {len(g.states)} "
                "most used) are not shown."
            )
            note = f"{note} {hidden}" if note else hidden
        out.append(
            Table(
                graph_title(data, g),
                (
                    "State",
                    "Type",
                    "Ran",
                    "Transitions (event -> next: times taken)",
                    "Ended here (share of its runs, by event)",
                ),
                graph_rows(g),
                frozenset({2}),
                note,
            )
        )
    if not out:
        out.append(Table("Flow graphs", ("State",), [], frozenset(), data.notes.get("graphs")))
    return out


def per_day_table(data: ReportData) -> Table:
    """Engagements per day pivoted: one row per day, one column per flow, and the day's total."""
    flows = [sid for sid in data.flow_sids() if any(d.flow_sid == sid for d in data.per_day)]
    counts = {(d.day, d.flow_sid): d.count for d in data.per_day}
    days = sorted({d.day for d in data.per_day})
    rows = [
        (
            day.isoformat(),
            *(str(counts.get((day, sid), 0)) for sid in flows),
            str(sum(counts.get((day, sid), 0) for sid in flows)),
        )
        for day in days
    ]
    return Table(
        "Engagements per day (UTC, by date created)",
        ("Day", *(data.flow_name(sid) for sid in flows), "All flows"),
        rows,
        frozenset(range(1, len(flows) + 2)),
    )


def widget_label(widget: str | None) -> str:
    """A widget's name, ``(none)`` for a step without one."""
    return "(none)" if widget is None else widget


def transition_label(from_status: str, to_status: str) -> str:
    """E.g. ``active -> ended``."""
    return f"{from_status} -> {to_status}"


def history_tables(data: ReportData) -> list[Table]:
    """Status transitions and active times; just the note when the dataset keeps no versions."""
    name = data.flow_name
    title = "Status transitions per day (UTC, by version time"
    title += f": {data.version_column})" if data.version_column else ")"
    transitions = Table(
        title,
        ("Day", "Flow", "From", "To", "Versions"),
        [(r.day.isoformat(), name(r.flow_sid), r.from_status, r.to_status, str(r.count)) for r in data.transitions],
        frozenset({4}),
        data.notes.get("transitions"),
    )
    if data.version_column is None:
        return [transitions]
    active = Table(
        "Time active before ending (engagements with an active -> ended version, by that version's day)",
        ("Day", "Flow", "Engagements", "Median hours active"),
        [(a.day.isoformat(), name(a.flow_sid), str(a.count), f"{a.median_hours:.1f} h") for a in data.active_times],
        frozenset({2, 3}),
        data.notes.get("active_times"),
    )
    return [transitions, active]


def graph_rows(graph: FlowGraph) -> list[tuple[str, ...]]:
    """Per state: name, type, runs, the transitions with their counts, the drop-off labels."""
    rows: list[tuple[str, ...]] = []
    for s in graph.states:
        out = [e for e in graph.edges if e.from_state == s.name and edge_shown(e, graph.edges)]
        taken = "; ".join(f"{edge_label(e)}: {e.count}" for e in out) or "-"
        rows.append((s.name, s.type or "?", str(s.ran), taken, s.drop_off() or "-"))
    return rows
