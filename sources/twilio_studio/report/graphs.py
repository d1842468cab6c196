"""The report's flow graphs: each flow's design (states and transitions of one revision) with counts.

For each flow, the revision most engagements ran (v1 engagements ran the revision published when
they were created; see README "Flow definitions and revisions"): its states in design order, every
designed transition with the number of times it was taken, and the drop-off at every state
labelled with the widget's type and the event it ended with ("gather-input-on-call: 31% timeout").

With steps loaded (``engagement_steps``), counts come from the steps: a step is one widget that ran,
the event it ended with and where the flow went. Without them, they are derived from each
engagement's context (``engagements__widgets``: the widgets it reached, in order): a transition is
two consecutive widgets, its event is unknown, and a widget that ran twice counts once.

Here: the graph, its SQL and the labels of its transitions; ``layout.graph_rows`` shows it as a
table, ``charts.graph_figure`` draws it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twilio_studio.report.readers import SqlReader

ENDED = "Ended"
TRIGGER = "Trigger"
MAX_SHOWN_STATES = 40  # a flow of 2,000 widgets shows its most used ones; the rest are counted in a note
FROM_CONTEXT_NOTE = (
    "Steps were not loaded, so these counts are derived from each engagement's context (the widgets it "
    "reached, in order): a transition is two consecutive widgets and its event is unknown; a widget that "
    "ran twice counts once; drop-off is the share of engagements that reached the widget and ended there, "
    "named by the branches that end there in the design. "
    "Load engagement_steps (--resources flows,flow_revisions,engagements,engagement_steps) for exact counts "
    "per event."
)
NO_PATHS_NOTE = (
    "No flow graphs: this dataset has neither steps (engagement_steps) nor widget data "
    "(engagements__widgets, e.g. loaded with context_mode='never'), so nothing says which way engagements went."
)
NO_DEFINITIONS_NOTE = (
    "No flow definitions in this dataset (the flow_states and flow_transitions tables are missing or empty): "
    "they are loaded by the default resources (flow_revisions); load again to see each flow's graph."
)


@dataclass
class GraphState:
    """One widget of the design, how often it ran, and how often engagements ended there, by event."""

    name: str
    type: str | None
    position: int
    ran: int = 0
    ended: dict[str, int] = field(default_factory=dict)  # event ("" when unknown) -> engagements that ended

    def drop_off(self) -> str:
        """How the engagements that ended at this widget ended, e.g. ``gather-input-on-call: 31% timeout, 2% hangup``.

        Of the runs of this widget, the share that ended the engagement here, by the event it ended with,
        the largest first; "" for none.
        """
        shares = [
            f"{100.0 * n / self.ran:.0f}% {event or 'ended here'}"
            for event, n in sorted(self.ended.items(), key=lambda kv: (-kv[1], kv[0]))
            if n and self.ran
        ]
        return f"{self.type or 'unknown type'}: {', '.join(shares)}" if shares else ""


@dataclass
class GraphEdge:
    """A transition: designed (``designed``) and/or taken (``count``); ``to_state`` None ends the branch."""

    from_state: str
    event: str | None  # None: unknown (derived from the context)
    to_state: str | None
    count: int = 0
    designed: bool = True
    either: tuple[str, ...] = ()  # from the context: the designed events that lead from_state to to_state


@dataclass
class FlowGraph:
    """One flow's design in one revision, with what its engagements did there."""

    flow_sid: str
    revision: int
    engagements: int  # engagements that ran this revision
    all_engagements: int  # engagements of the flow
    from_steps: bool
    states: list[GraphState]
    edges: list[GraphEdge]
    hidden_states: int = 0  # states beyond MAX_SHOWN_STATES, least used first


def _revision_sql(engagements: str, revisions: str) -> str:
    return (
        f"SELECT e.sid, e.flow_sid, e.status, (SELECT max(r.revision) FROM {revisions} r "
        "WHERE r.flow_sid = e.flow_sid AND r.status = 'published' AND r.date_created <= e.date_created) "
        f"AS revision FROM {engagements} e"
    )


def build_graphs(
    read: SqlReader,
    table: Callable[[str], str],
    has: Callable[[str], bool],
    engagements: str,
    widgets: str | None,
) -> tuple[list[FlowGraph], str | None]:
    """Every flow's graph, and the note the page shows about where the counts come from."""
    if not (has("flow_states") and has("flow_transitions") and has("flow_revisions")):
        return [], NO_DEFINITIONS_NOTE
    if not has("engagement_steps") and widgets is None:
        return [], NO_PATHS_NOTE
    runs = f"({_revision_sql(engagements, table('flow_revisions'))}) er"
    per_revision = read(f"SELECT flow_sid, revision, count(*) FROM {runs} GROUP BY flow_sid, revision")
    totals: dict[str, int] = {}
    chosen: dict[str, tuple[int, int]] = {}  # flow -> (engagements, revision)
    for flow, revision, n in per_revision:
        totals[str(flow)] = totals.get(str(flow), 0) + int(n)
        if revision is not None and (int(n), int(revision)) > chosen.get(str(flow), (0, 0)):
            chosen[str(flow)] = (int(n), int(revision))
    if not chosen:
        return [], NO_DEFINITIONS_NOTE
    graphs = {flow: _design(read, table, flow, rev, n, totals[flow]) for flow, (n, rev) in chosen.items()}
    note = None
    if has("engagement_steps"):
        _count_steps(read, table("engagement_steps"), runs, graphs)
    elif widgets is not None:
        _count_context(read, widgets, runs, graphs)
        note = FROM_CONTEXT_NOTE
    out = []
    for graph in graphs.values():
        _trim(graph)
        out.append(graph)
    return sorted(out, key=lambda g: g.flow_sid), note


def _design(read: SqlReader, table: Callable[[str], str], flow: str, revision: int, n: int, total: int) -> FlowGraph:
    where = f"WHERE flow_sid = '{flow.replace(chr(39), '')}' AND revision = {int(revision)}"
    states = [
        GraphState(str(name), None if kind is None else str(kind), int(pos))
        for name, kind, pos in read(f"SELECT name, type, position FROM {table('flow_states')} {where}")
    ]
    states.sort(key=lambda s: (s.position, s.name))
    edges = [
        GraphEdge(str(a), None if e is None else str(e), None if b is None else str(b))
        for a, e, b, _ in sorted(
            read(f"SELECT from_state, event, to_state, position FROM {table('flow_transitions')} {where}"),
            key=lambda r: (str(r[0]), int(r[3])),
        )
    ]
    return FlowGraph(flow, revision, n, total, False, states, edges)


def _state(graph: FlowGraph, name: str) -> GraphState:
    for s in graph.states:
        if s.name == name:
            return s
    extra = GraphState(name, None, len(graph.states) + 10_000)  # ran, but not in this revision's design
    graph.states.append(extra)
    return extra


def _count_steps(read: SqlReader, steps: str, runs: str, graphs: dict[str, FlowGraph]) -> None:
    rows = read(
        "SELECT er.flow_sid, er.revision, s.transitioned_from, s.name, s.transitioned_to, count(*) "
        f"FROM {steps} s JOIN {runs} ON er.sid = s.engagement_sid "
        "WHERE s.parent_step_sid IS NULL "  # a subflow's steps walk the subflow's design, not the parent's
        "GROUP BY er.flow_sid, er.revision, s.transitioned_from, s.name, s.transitioned_to"
    )
    for flow, revision, widget, event, to, n in rows:
        graph = graphs.get(str(flow))
        if graph is None or revision is None or int(revision) != graph.revision or widget is None:
            continue
        graph.from_steps = True
        state = _state(graph, str(widget))
        state.ran += int(n)
        target = None if to is None or to == ENDED else str(to)
        if to == ENDED:
            state.ended[str(event or "")] = state.ended.get(str(event or ""), 0) + int(n)
        edge = next(
            (e for e in graph.edges if e.from_state == widget and e.event == event and e.to_state == target), None
        )
        if edge is None:
            edge = GraphEdge(str(widget), None if event is None else str(event), target, designed=False)
            graph.edges.append(edge)
        edge.count += int(n)


def _count_context(read: SqlReader, widgets: str, runs: str, graphs: dict[str, FlowGraph]) -> None:
    reached = read(
        "SELECT er.flow_sid, er.revision, w.name, count(DISTINCT w.engagement_sid) "
        f"FROM {widgets} w JOIN {runs} ON er.sid = w.engagement_sid GROUP BY er.flow_sid, er.revision, w.name"
    )
    pairs = read(
        "SELECT flow_sid, revision, name, next_name, ended, count(*) FROM ("
        "SELECT er.flow_sid, er.revision, w.name, er.status = 'ended' AS ended, "
        "LEAD(w.name) OVER (PARTITION BY w.engagement_sid ORDER BY w.position) AS next_name "
        f"FROM {widgets} w JOIN {runs} ON er.sid = w.engagement_sid) p "
        "GROUP BY flow_sid, revision, name, next_name, ended"
    )
    firsts = read(
        "SELECT flow_sid, revision, name, count(*) FROM ("
        "SELECT er.flow_sid, er.revision, w.name, ROW_NUMBER() OVER "
        "(PARTITION BY w.engagement_sid ORDER BY w.position) AS rn "
        f"FROM {widgets} w JOIN {runs} ON er.sid = w.engagement_sid) f WHERE rn = 1 GROUP BY flow_sid, revision, name"
    )

    def mine(flow: Any, revision: Any) -> FlowGraph | None:
        graph = graphs.get(str(flow))
        return graph if graph is not None and revision is not None and int(revision) == graph.revision else None

    for flow, revision, name, n in reached:
        if (graph := mine(flow, revision)) is not None:
            _state(graph, str(name)).ran += int(n)
    for flow, revision, name, n in firsts:
        if (graph := mine(flow, revision)) is not None:
            trigger = _state(graph, TRIGGER)
            trigger.ran += int(n)
            _add_pair(graph, TRIGGER, str(name), int(n))
    for flow, revision, name, nxt, ended, n in pairs:
        if (graph := mine(flow, revision)) is None:
            continue
        if nxt is not None:
            _add_pair(graph, str(name), str(nxt), int(n))
        elif ended:
            # the event is unknown, but the design says which branches end here
            state = _state(graph, str(name))
            ending = " or ".join(str(e.event) for e in graph.edges if e.from_state == state.name and e.to_state is None)
            state.ended[ending] = state.ended.get(ending, 0) + int(n)


def _add_pair(graph: FlowGraph, a: str, b: str, n: int) -> None:
    """Two consecutive widgets: the count goes to the one designed transition a -> b, or to an 'any event' edge."""
    designed = [e for e in graph.edges if e.from_state == a and e.to_state == b]
    if len(designed) == 1:
        designed[0].count += n
        return
    edge = next((e for e in graph.edges if e.from_state == a and e.to_state == b and e.event is None), None)
    if edge is None:
        edge = GraphEdge(a, None, b, designed=bool(designed), either=tuple(str(e.event) for e in designed))
        graph.edges.append(edge)
    edge.count += n


def _trim(graph: FlowGraph) -> None:
    """Keeps the states that ran or that a state that ran leads to, at most MAX_SHOWN_STATES of them."""
    ran = {s.name for s in graph.states if s.ran}
    near = ran | {e.to_state for e in graph.edges if e.from_state in ran and e.to_state}
    keep = [s for s in graph.states if s.name in near or s.name == TRIGGER]
    if len(keep) > MAX_SHOWN_STATES:
        keep = sorted(sorted(keep, key=lambda s: -s.ran)[:MAX_SHOWN_STATES], key=lambda s: s.position)
    graph.hidden_states = len(graph.states) - len(keep)
    names = {s.name for s in keep}
    graph.states = keep
    graph.edges = [e for e in graph.edges if e.from_state in names and (e.to_state is None or e.to_state in names)]


# ------------------------------------------------------------------------------------------ labels
def edge_shown(e: GraphEdge, edges: list[GraphEdge]) -> bool:
    """Whether a transition is drawn: taken ones, and designed ones that lead somewhere.

    Not the trigger's unused events, nor those an edge derived from the context already counts
    together.
    """
    if e.count > 0:
        return True
    covered = any(o.either and o.from_state == e.from_state and o.to_state == e.to_state for o in edges)
    return e.designed and e.to_state is not None and not covered


def event_label(e: GraphEdge) -> str:
    """The event of a transition, the designed events it may be, or ``(any event)``."""
    if e.event is not None:
        return e.event
    return " or ".join(e.either) if e.either else "(any event)"


def edge_label(e: GraphEdge) -> str:
    """E.g. ``timeout -> end`` or ``incomingMessage -> ask (not in this revision)``."""
    event = event_label(e)
    target = e.to_state if e.to_state is not None else "end"
    return f"{event} -> {target}" + ("" if e.designed else " (not in this revision)")
