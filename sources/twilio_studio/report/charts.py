"""The report's charts, drawn with matplotlib (the ``charts`` extra: ``pip install 'twilio-studio-dlt[charts]'``).

Each ``chart_*`` function returns a matplotlib ``Figure`` (None when there is nothing to draw);
``images`` turns figures into inline ``<img>`` tags. matplotlib is imported only here and only when
a chart is drawn: without it ``available()`` is False and the HTML page shows its tables alone.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable
from datetime import date
from typing import TYPE_CHECKING

from twilio_studio.report.graphs import FlowGraph, GraphEdge, event_label
from twilio_studio.report.layout import transition_label, widget_label
from twilio_studio.report.model import DURATION_BUCKETS, ReportData

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 'twilio-studio-dlt[charts]'"


def available() -> bool:
    """Whether matplotlib can be imported, so the charts can be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def images(figures: Iterable[Figure | None]) -> str:
    """The figures as ``<img>`` tags with base64 PNG data URIs, one a line; None is left out."""
    return "\n".join(_png(f) for f in figures if f is not None)


def _png(fig: Figure) -> str:
    """The figure as an ``<img>`` with a base64 PNG data URI (no metadata, no external reference)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # draws with Agg whatever the process-wide backend is
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    title = fig.axes[0].get_title() if fig.axes else "chart"
    encoded = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(title)}" src="data:image/png;base64,{encoded}">'


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def chart_per_day(data: ReportData) -> Figure | None:
    """Engagements per UTC day, stacked by flow."""
    if not data.per_day:
        return None
    days = sorted({d.day for d in data.per_day})
    fig = _figure(10, 4)
    ax = fig.add_subplot()
    bottom = [0] * len(days)
    for sid in data.flow_sids():
        counts = {d.day: d.count for d in data.per_day if d.flow_sid == sid}
        heights = [counts.get(day, 0) for day in days]
        if any(heights):
            ax.bar([d.isoformat() for d in days], heights, bottom=bottom, label=data.flow_name(sid))
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_title("Engagements per day (UTC)")
    ax.set_ylabel("engagements")
    ax.tick_params(axis="x", labelrotation=45)
    ax.legend(fontsize="small")
    return fig


def chart_status(data: ReportData) -> Figure | None:
    """Status share of all flows and of each flow, as stacked horizontal bars."""
    groups: list[str | None] = [None, *data.flow_sids()]
    statuses = sorted({s.status for s in data.status})
    if not statuses:
        return None
    fig = _figure(10, 1.2 + 0.45 * len(groups))
    ax = fig.add_subplot()
    labels = [data.flow_name(g) for g in groups]
    left = [0.0] * len(groups)
    for status in statuses:
        share = {s.flow_sid: s.percent for s in data.status if s.status == status}
        widths = [share.get(g, 0.0) for g in groups]
        ax.barh(labels, widths, left=left, label=status)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("percent of engagements")
    ax.set_title("Status share")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def chart_funnel(data: ReportData, flow_sid: str) -> Figure | None:
    """One flow's widgets: engagements that reached each, and ended ones that stopped there."""
    steps = [f for f in data.funnel if f.flow_sid == flow_sid]
    if not steps:
        return None
    fig = _figure(9, 1.2 + 0.4 * len(steps))
    ax = fig.add_subplot()
    names = [s.widget for s in steps]
    ax.barh(names, [s.reached for s in steps], label="reached", color="#4c78a8")
    ax.barh(names, [s.stopped for s in steps], label="stopped here (ended)", color="#e45756", height=0.45)
    ax.invert_yaxis()
    ax.set_xlabel("engagements")
    ax.set_title(f"Widget funnel: {data.flow_name(flow_sid)}")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def chart_paths(data: ReportData, flow_sid: str) -> Figure | None:
    """One flow's most common widget-to-widget transitions."""
    edges = [p for p in data.paths if p.flow_sid == flow_sid]
    if not edges:
        return None
    fig = _figure(9, 1.2 + 0.4 * len(edges))
    ax = fig.add_subplot()
    labels = [f"{widget_label(p.from_widget)} -> {widget_label(p.to_widget)}" for p in edges]
    ax.barh(range(len(edges)), [p.count for p in edges], color="#54a24b")
    ax.set_yticks(range(len(edges)), labels)  # by position: two edges never share a bar
    ax.invert_yaxis()
    ax.set_xlabel("steps")
    ax.set_title(f"Widget paths: {data.flow_name(flow_sid)}")
    return fig


def chart_durations(data: ReportData) -> Figure | None:
    """Ended engagements per duration bucket, one bar per flow."""
    if not data.duration_buckets:
        return None
    flows = [s for s in data.flow_sids() if any(b.flow_sid == s for b in data.duration_buckets)]
    labels = [label for _, label in DURATION_BUCKETS]
    fig = _figure(10, 4)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(flows))
    for n, sid in enumerate(flows):
        counts = {b.label: b.count for b in data.duration_buckets if b.flow_sid == sid}
        xs = [i + n * width - 0.4 + width / 2 for i in range(len(labels))]
        ax.bar(xs, [counts.get(label, 0) for label in labels], width=width, label=data.flow_name(sid))
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("ended engagements")
    ax.set_title("Time from created to last update (ended engagements)")
    ax.legend(fontsize="small")
    return fig


def chart_transitions(data: ReportData) -> Figure | None:
    """Stacked bars per day by transition: changes between versions on top, first versions below.

    First versions (``new`` -> status) far outnumber changes in a typical dataset; on their own
    axes the changes stay readable.
    """
    if not data.transitions:
        return None
    days = sorted({r.day for r in data.transitions})
    counts: dict[tuple[str, str], dict[date, int]] = {}
    for r in data.transitions:
        per_day = counts.setdefault((r.from_status, r.to_status), {})
        per_day[r.day] = per_day.get(r.day, 0) + r.count
    panels = [
        (label, keys)
        for label, keys in (
            ("changed versions", sorted(k for k in counts if k[0] != "new")),
            ("first versions", sorted(k for k in counts if k[0] == "new")),
        )
        if keys
    ]
    colors = {key: f"C{n % 10}" for n, key in enumerate(sorted(counts))}  # one color per transition
    fig = _figure(10, 1.5 + 2.5 * len(panels))
    labels = [d.isoformat() for d in days]
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (ylabel, keys) in zip(axes, panels, strict=True):
        bottom = [0] * len(days)
        for key in keys:
            heights = [counts[key].get(day, 0) for day in days]
            ax.bar(labels, heights, bottom=bottom, width=0.6, color=colors[key], label=transition_label(*key))
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax.set_ylabel(ylabel)
        ax.set_xlim(-0.75, len(days) - 0.25)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    axes[0].set_title("Status transitions per day (UTC, all flows)")
    axes[-1].tick_params(axis="x", labelrotation=45)
    return fig


def graph_figure(graph: FlowGraph, title: str) -> Figure:
    """The design as boxes in design order, arrows for transitions (width by count), drop-off in red."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    n = len(graph.states)
    fig = _figure(11, 1.0 + 0.95 * n)
    ax = fig.add_subplot()
    y = {s.name: -1.3 * i for i, s in enumerate(graph.states)}
    for s in graph.states:
        ax.add_patch(
            FancyBboxPatch((-1.6, y[s.name] - 0.35), 3.2, 0.7, boxstyle="round,pad=0.05", fc="#eef3fa", ec="#4c78a8")
        )
        ax.text(0, y[s.name] + 0.1, s.name, ha="center", va="center", fontsize=9, weight="bold")
        ax.text(0, y[s.name] - 0.18, f"{s.type or '?'} - ran {s.ran}", ha="center", va="center", fontsize=7.5)
        label = s.drop_off()
        if label:
            ax.text(1.8, y[s.name], label.replace(": ", ":\n", 1), ha="left", va="center", fontsize=8, color="#c0392b")
    pairs: dict[tuple[str, str], list[GraphEdge]] = {}
    for e in graph.edges:
        if e.to_state is not None and e.to_state in y and e.count:
            pairs.setdefault((e.from_state, e.to_state), []).append(e)
    top = max([sum(e.count for e in es) for es in pairs.values()] + [1])
    slots: dict[str, int] = {}
    for (source, target), es in pairs.items():
        a, b = y[source], y[target]
        count = sum(e.count for e in es)
        width = 0.6 + 4.0 * count / top
        color = "#54a24b" if all(e.designed for e in es) else "#999999"
        label = ", ".join(f"{event_label(e)} {e.count}" for e in es)
        if b < a and abs(a - b) < 1.31:  # the next box: straight down, counts on the left
            arrow = FancyArrowPatch(
                (0, a - 0.4), (0, b + 0.4), arrowstyle="-|>", mutation_scale=12, lw=width, color=color
            )
            ax.add_patch(arrow)
            ax.text(-0.1, (a + b) / 2, label, ha="right", va="center", fontsize=7.5)
            continue
        slot = slots.get(source, 0)
        slots[source] = slot + 1
        side = -1.6 if b < a else 1.6  # skips go down the left, loops back up the right
        rad = 0.35 if b < a else -0.35
        arrow = FancyArrowPatch((side, a), (side, b), connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
                                mutation_scale=12, lw=width, color=color)  # fmt: skip
        ax.add_patch(arrow)
        x = side - 0.5 - 0.3 * slot if b < a else side + 0.3
        ax.text(x, (a + b) / 2, label, ha="right" if b < a else "left", va="center", fontsize=7.5)
    ax.set_xlim(-4.5, 6.5)
    ax.set_ylim(-1.3 * n + 0.6, 0.8)
    ax.axis("off")
    ax.set_title(title)
    return fig
