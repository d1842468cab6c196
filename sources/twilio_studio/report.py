"""A usage report over a loaded Studio dataset: volume, outcomes, durations, widget funnels, the most
common widget-to-widget transitions (when steps were loaded), flow data, and status transitions over
time when the dataset keeps versions (``write_mode`` scd2 or append).

    run = duckdb_runner("studio.duckdb", "twilio_studio")
    data = build_report(run, "twilio_studio")
    write_report(data, "report.html")

The numbers come from SQL that runs unchanged on DuckDB and PostgreSQL, through a ``Runner``: any
callable that takes a query and returns its rows. ``dlt_runner`` reads back through dlt's own SQL
client, so every SQL destination dlt can query works. The report never reads the contact's address
or the raw ``context``; ``render_html`` needs matplotlib, ``render_text`` needs nothing.

Every section but the status transitions counts each engagement once, in its current version: in an
scd2 dataset the version with ``valid_to`` NULL, in an append dataset the latest snapshot by
``snapshot_at``, with only the child rows (widgets, flow data) of that version.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dlt
import duckdb
from dlt.common.destination import TDestinationReferenceArg

from twilio_studio.report_graph import FlowGraph, build_graphs, graph_figure, graph_rows

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger("twilio_studio.report")

Runner = Callable[[str], list[tuple[Any, ...]]]
"""Runs one SQL query and returns all its rows."""

ALL_FLOWS = None  # the flow_sid of rows that cover every flow
# Upper bounds (seconds) of the duration histogram's buckets; the last bucket is open-ended.
DURATION_BUCKETS: tuple[tuple[float | None, str], ...] = (
    (60, "< 1 min"),
    (600, "1-10 min"),
    (3_600, "10-60 min"),
    (86_400, "1-24 h"),
    (None, ">= 1 day"),
)
NO_WIDGETS_NOTE = (
    "No widget data in this dataset (the engagements__widgets table is missing or empty), "
    "e.g. because it was loaded with context_mode='never'."
)
NO_FLOW_DATA_NOTE = "No flow data in this dataset (the engagements__flow_data table is missing or empty)."
NO_STEPS_NOTE = (
    "No step data in this dataset (the engagement_steps table is missing or empty): steps are loaded only "
    "when selected, e.g. twilio-studio run --resources flows,flow_revisions,engagements,engagement_steps, or "
    'twilio_studio_source().with_resources("flows", "flow_revisions", "engagements", "engagement_steps").'
)
NO_DURATIONS_NOTE = "No ended engagement has a date_updated, so there are no durations to show."
NO_VERSIONS_NOTE = (
    "No status transitions: this dataset holds only the latest state of each engagement (write_mode merge). "
    "Load with write_mode scd2 (every version, with valid_from and valid_to) or append (a snapshot of the "
    "changed engagements per run, with snapshot_at) to see how engagements move between statuses over time."
)
NO_ACTIVE_TO_ENDED_NOTE = "No engagement has a version that went from active to ended with a date_updated."
# The columns that give a version's time, by write mode: scd2's valid_from, append's snapshot_at.
VERSION_COLUMNS = ("valid_from", "snapshot_at")


# ------------------------------------------------------------------------------------------- runners
def duckdb_runner(path: str, dataset: str) -> Runner:
    """A runner over a DuckDB file, opened read-only per query with ``dataset`` on the search path.

    Args:
        path: The DuckDB database file the pipeline loaded into.
        dataset: The dlt dataset name (a schema in the file), e.g. ``twilio_studio``.

    Returns:
        The runner.

    Raises:
        ValueError: (from the runner) the file has no schema named ``dataset``.
    """

    def run(sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(path, read_only=True) as con:
            try:
                con.execute(f"SET search_path = {quote_literal(dataset)}")
            except duckdb.CatalogException as e:
                found = con.execute("SELECT DISTINCT schema_name FROM duckdb_schemas() WHERE NOT internal")
                schemas = sorted(str(r[0]) for r in found.fetchall())
                raise ValueError(
                    f"dataset {dataset!r} is not in {path}: pass the dataset_name the pipeline loaded into "
                    f"(the default is 'twilio_studio'); the file has {', '.join(schemas)}"
                ) from e
            return [tuple(row) for row in con.execute(sql).fetchall()]

    return run


def dlt_runner(
    pipeline_name: str,
    destination: TDestinationReferenceArg = None,
    dataset_name: str | None = None,
    pipelines_dir: str | None = None,
) -> Runner:
    """A runner through a dlt pipeline's SQL client: any SQL destination dlt can read back.

    Args:
        pipeline_name: The pipeline that loaded the data.
        destination: Its destination: a destination object such as
            ``dlt.destinations.postgres(credentials)``, or a name (``"postgres"``) whose credentials
            dlt finds in its config (``.dlt/secrets.toml`` or env vars); None uses the destination
            saved in the pipeline's local state. A DuckDB file needs ``dlt.destinations.duckdb(path)``:
            by name, dlt opens ``<pipeline_name>.duckdb`` in the working directory.
        dataset_name: Its dataset; None uses the one saved in the pipeline's local state.
        pipelines_dir: Where the pipeline keeps its local state; None is dlt's default.

    Returns:
        The runner; each query opens and closes its own connection.
    """
    # dlt's own defaults apply where an argument is None (its signature says str, not str | None)
    options: dict[str, Any] = {"pipeline_name": pipeline_name, "destination": destination}
    if dataset_name is not None:
        options["dataset_name"] = dataset_name
    if pipelines_dir is not None:
        options["pipelines_dir"] = pipelines_dir
    pipeline = dlt.pipeline(**options)

    def run(sql: str) -> list[tuple[Any, ...]]:
        with pipeline.sql_client() as client:
            rows = client.execute_sql(sql)
        return [tuple(row) for row in rows or []]

    return run


def quote_ident(name: str) -> str:
    """An SQL identifier in double quotes, as both DuckDB and PostgreSQL read it."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """An SQL string literal in single quotes."""
    return "'" + value.replace("'", "''") + "'"


# -------------------------------------------------------------------------------------- report data
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


# -------------------------------------------------------------------------------------- computation
class _Tables:
    """Qualified names of the dataset's tables, which of them exist, and their columns."""

    def __init__(self, run: Runner, dataset: str) -> None:
        self.dataset = dataset
        rows = run(
            "SELECT table_name, column_name FROM information_schema.columns "
            f"WHERE table_schema = {quote_literal(dataset)}"
        )
        self._columns: dict[str, set[str]] = {}
        for table, column in rows:
            self._columns.setdefault(str(table), set()).add(str(column))

    def __contains__(self, table: str) -> bool:
        return table in self._columns

    def __getitem__(self, table: str) -> str:
        return f"{quote_ident(self.dataset)}.{quote_ident(table)}"

    def columns(self, table: str) -> set[str]:
        """The names of a table's columns (empty when it does not exist)."""
        return set(self._columns.get(table, ()))


# the engagement columns the current-version sections read (never the address or the raw context)
CURRENT_COLUMNS = ("sid", "flow_sid", "status", "date_created", "date_updated")


class _Current:
    """SQL for the current version of each engagement, and for the child rows of that version only.

    merge: the engagements table itself (one row per sid; a changed engagement's child rows are
    replaced with it). scd2: the version with ``valid_to`` NULL. append (or scd2 without
    ``valid_to``): the latest version by the version column. A version's child rows carry its
    ``_dlt_id`` in ``_dlt_root_id`` (the Arrow path of append mode) or, in direct child tables
    without a root id (dlt's normalizer in scd2 mode), in ``_dlt_parent_id``.
    """

    def __init__(self, t: _Tables, version_column: str | None) -> None:
        self.t = t
        columns = t.columns("engagements")
        self.versioned = version_column is not None
        self.linked = self.versioned and "_dlt_id" in columns  # child rows can be tied to their version
        if version_column is None:
            self.engagements = t["engagements"]
            return
        selected = ", ".join([*CURRENT_COLUMNS, *(["_dlt_id"] if self.linked else [])])
        if version_column == "valid_from" and "valid_to" in columns:
            self.engagements = f"(SELECT {selected} FROM {t['engagements']} WHERE valid_to IS NULL)"
            return
        # latest first, the reverse of the transitions' order of versions (version time, date_updated
        # NULLS FIRST, status), so both agree on which version is the last one
        latest = (
            f"ROW_NUMBER() OVER (PARTITION BY sid ORDER BY {quote_ident(version_column)} DESC NULLS LAST, "
            "date_updated DESC NULLS LAST, status DESC NULLS FIRST) AS version_rank"
        )
        self.engagements = (
            f"(SELECT {selected} FROM (SELECT {selected}, {latest} FROM {t['engagements']}) ranked "
            "WHERE version_rank = 1)"
        )

    def child(self, table: str, columns: Sequence[str]) -> str:
        """A FROM item with the child rows of the current versions only."""
        if not self.versioned:
            return self.t[table]
        present = self.t.columns(table)
        link = next((c for c in ("_dlt_root_id", "_dlt_parent_id") if c in present), None)
        if not self.linked or link is None:
            logger.warning("cannot tie the rows of %s to engagement versions: counting every version's rows", table)
            return self.t[table]
        return (
            f"(SELECT {', '.join(f'c.{quote_ident(c)}' for c in columns)} FROM {self.t[table]} c "
            f"WHERE c.{link} IN (SELECT _dlt_id FROM {self.engagements} cur))"
        )


def build_report(run: Runner, dataset: str, top_n: int = 10) -> ReportData:
    """Computes the report's numbers from a loaded dataset.

    Args:
        run: Runs SQL on the destination, e.g. from ``duckdb_runner`` or ``dlt_runner``.
        dataset: The dataset (schema) the pipeline loaded into, e.g. ``twilio_studio``.
        top_n: How many of the most frequent values to show per flow-data key, and of the most
            common widget-to-widget transitions per flow.

    Returns:
        The report data.

    Raises:
        ValueError: ``top_n`` is below 1, or the dataset has no ``engagements`` table.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be 1 or more, got {top_n}")
    t = _Tables(run, dataset)
    if "engagements" not in t:
        raise ValueError(
            f"dataset {dataset!r} has no engagements table: pass the destination and the dataset_name "
            "the pipeline loaded into (the default dataset is 'twilio_studio'), and run it at least once"
        )
    notes: dict[str, str] = {}
    version_column = _version_column(t)
    current = _Current(t, version_column)
    status = _status_shares(run, current)
    durations, buckets = _durations(run, current)
    if not durations:
        notes["durations"] = NO_DURATIONS_NOTE
    funnel, entered = _funnel(run, current) if "engagements__widgets" in t else ([], {})
    if not funnel:
        notes["funnel"] = NO_WIDGETS_NOTE
    paths = _paths(run, t, top_n) if "engagement_steps" in t else []
    if not paths:
        notes["paths"] = NO_STEPS_NOTE
    top = _top_values(run, current, top_n) if "engagements__flow_data" in t else []
    if not top:
        notes["top_values"] = NO_FLOW_DATA_NOTE
    widgets = current.child("engagements__widgets", ("engagement_sid", "name", "position"))
    graphs, graph_note = build_graphs(
        run, t.__getitem__, t.__contains__, current.engagements, widgets if "engagements__widgets" in t else None
    )
    if graph_note:
        notes["graphs"] = graph_note
    transitions: list[Transition] = []
    active_times: list[ActiveTime] = []
    if version_column is None:
        notes["transitions"] = NO_VERSIONS_NOTE
    else:
        transitions, active_times = _transitions(run, t, version_column)
        if not active_times:
            notes["active_times"] = NO_ACTIVE_TO_ENDED_NOTE
    data = ReportData(
        dataset=dataset,
        top_n=top_n,
        flow_names=_flow_names(run, t),
        total_engagements=sum(s.count for s in status if s.flow_sid is ALL_FLOWS),
        per_day=_per_day(run, current),
        status=status,
        durations=durations,
        duration_buckets=buckets,
        funnel=funnel,
        funnel_entered=entered,
        paths=paths,
        top_values=top,
        version_column=version_column,
        transitions=transitions,
        active_times=active_times,
        notes=notes,
        graphs=graphs,
    )
    _order_by_flow_name(data)
    logger.info("report on %s: %d engagements in %d flows", dataset, data.total_engagements, len(data.flow_sids()))
    return data


def _order_by_flow_name(data: ReportData) -> None:
    """Sorts every list by flow name ("All flows" first), keeping each flow's rows in their order."""
    rank = {sid: n for n, sid in enumerate(data.flow_sids())}

    def flow(sid: str | None) -> int:
        return -1 if sid is None else rank.get(sid, len(rank))

    data.per_day.sort(key=lambda d: (d.day, flow(d.flow_sid)))
    data.status.sort(key=lambda s: flow(s.flow_sid))
    data.durations.sort(key=lambda d: flow(d.flow_sid))
    data.duration_buckets.sort(key=lambda b: flow(b.flow_sid))
    data.funnel.sort(key=lambda f: flow(f.flow_sid))
    data.paths.sort(key=lambda p: flow(p.flow_sid))
    data.graphs.sort(key=lambda g: flow(g.flow_sid))
    data.top_values.sort(key=lambda v: flow(v.flow_sid))
    data.transitions.sort(key=lambda r: (r.day, flow(r.flow_sid)))
    data.active_times.sort(key=lambda a: (a.day, flow(a.flow_sid)))


def _flow_names(run: Runner, t: _Tables) -> dict[str, str]:
    if "flows" not in t:
        return {}
    return {str(sid): str(name) for sid, name in run(f"SELECT sid, friendly_name FROM {t['flows']}") if name}


def _per_day(run: Runner, cur: _Current) -> list[DayCount]:
    rows = run(
        f"SELECT {_utc_day('date_created')} AS day, flow_sid, "
        f"count(*) FROM {cur.engagements} e WHERE date_created IS NOT NULL "
        "GROUP BY 1, 2 ORDER BY 1, 2"
    )
    return [DayCount(_as_date(day), str(flow), int(n)) for day, flow, n in rows]


def _status_shares(run: Runner, cur: _Current) -> list[StatusShare]:
    rows = run(
        f"SELECT flow_sid, COALESCE(status, 'unknown') AS status, count(*) FROM {cur.engagements} e GROUP BY 1, 2"
    )
    counts: dict[tuple[str | None, str], int] = {}
    for flow, status, n in rows:
        for key in ((str(flow), str(status)), (ALL_FLOWS, str(status))):
            counts[key] = counts.get(key, 0) + int(n)
    totals: dict[str | None, int] = {}
    for (flow, _), n in counts.items():
        totals[flow] = totals.get(flow, 0) + n
    shares = [StatusShare(flow, status, n, 100.0 * n / totals[flow]) for (flow, status), n in counts.items()]
    return sorted(shares, key=lambda s: (s.flow_sid is not None, s.flow_sid or "", -s.count, s.status))


def _durations(run: Runner, cur: _Current) -> tuple[list[DurationStats], list[DurationBucket]]:
    seconds = (
        "WITH d AS (SELECT flow_sid, CAST(EXTRACT(EPOCH FROM date_updated) - EXTRACT(EPOCH FROM date_created) "
        f"AS DOUBLE PRECISION) AS seconds FROM {cur.engagements} e "
        "WHERE status = 'ended' AND date_updated IS NOT NULL AND date_created IS NOT NULL) "
    )
    stats = (
        "count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds), "
        "percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds), avg(seconds) FROM d"
    )
    per_flow = run(f"{seconds}SELECT flow_sid, {stats} GROUP BY flow_sid ORDER BY flow_sid")
    overall = run(f"{seconds}SELECT {stats}")
    out = [
        DurationStats(str(flow), int(n), float(med), float(p90), float(mean)) for flow, n, med, p90, mean in per_flow
    ]
    if out:
        n, med, p90, mean = overall[0]
        out.insert(0, DurationStats(ALL_FLOWS, int(n), float(med), float(p90), float(mean)))
    cases = " ".join(
        f"WHEN seconds < {bound} THEN {i}" for i, (bound, _) in enumerate(DURATION_BUCKETS) if bound is not None
    )
    rows = run(
        f"{seconds}SELECT flow_sid, CASE {cases} ELSE {len(DURATION_BUCKETS) - 1} END AS bucket, count(*) "
        "FROM d GROUP BY 1, 2 ORDER BY 1, 2"
    )
    buckets = [DurationBucket(str(flow), DURATION_BUCKETS[int(b)][1], int(n)) for flow, b, n in rows]
    return out, buckets


def _funnel(run: Runner, cur: _Current) -> tuple[list[FunnelStep], dict[str, int]]:
    widgets = cur.child("engagements__widgets", ("engagement_sid", "flow_sid", "name", "position"))
    reached = run(
        "SELECT flow_sid, name, count(DISTINCT engagement_sid), min(position), "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY position) "
        f"FROM {widgets} w GROUP BY flow_sid, name"
    )
    stopped_rows = run(
        "WITH ranked AS (SELECT w.flow_sid, w.name, ROW_NUMBER() OVER "
        "(PARTITION BY w.engagement_sid ORDER BY w.position DESC, w.name) AS rn "
        f"FROM {widgets} w JOIN {cur.engagements} e ON e.sid = w.engagement_sid WHERE e.status = 'ended') "
        "SELECT flow_sid, name, count(*) FROM ranked WHERE rn = 1 GROUP BY flow_sid, name"
    )
    entered_rows = run(f"SELECT flow_sid, count(DISTINCT engagement_sid) FROM {widgets} w GROUP BY flow_sid")
    stopped = {(str(f), str(w)): int(n) for f, w, n in stopped_rows}
    ordered = sorted(reached, key=lambda r: (str(r[0]), float(r[4]), int(r[3]), str(r[1])))
    steps = [
        FunnelStep(str(f), str(w), float(median), int(n), stopped.get((str(f), str(w)), 0))
        for f, w, n, _, median in ordered
    ]
    return steps, {str(f): int(n) for f, n in entered_rows}


def _paths(run: Runner, t: _Tables, top_n: int) -> list[PathStep]:
    """The ``top_n`` most common ``transitioned_from -> transitioned_to`` pairs of each flow's steps.

    Steps merge on their sid in every write mode: each step counts once. Ties are broken by the
    widget names in Python, so DuckDB and PostgreSQL (whose collations differ) rank alike.
    """
    rows = run(
        "SELECT flow_sid, transitioned_from, transitioned_to, count(*) "
        f"FROM {t['engagement_steps']} WHERE flow_sid IS NOT NULL GROUP BY flow_sid, transitioned_from, transitioned_to"
    )
    per_flow: dict[str, list[tuple[str | None, str | None, int]]] = {}
    for flow, source, target, n in rows:
        per_flow.setdefault(str(flow), []).append(
            (None if source is None else str(source), None if target is None else str(target), int(n))
        )
    out: list[PathStep] = []
    for flow, edges in sorted(per_flow.items()):
        total = sum(n for _, _, n in edges)
        edges.sort(key=lambda e: (-e[2], e[0] is None, e[0] or "", e[1] is None, e[1] or ""))
        out += [PathStep(flow, a, b, n, 100.0 * n / total) for a, b, n in edges[:top_n]]
    return out


def _top_values(run: Runner, cur: _Current, top_n: int) -> list[TopValue]:
    # a plain value has path '' (a PostgreSQL load may have stored that '' as NULL)
    flow_data = cur.child("engagements__flow_data", ("flow_sid", "key", "path", "value"))
    rows = run(
        "WITH counted AS (SELECT flow_sid, key, value, count(*) AS n "
        f"FROM {flow_data} d WHERE COALESCE(path, '') = '' GROUP BY flow_sid, key, value), "
        "ranked AS (SELECT flow_sid, key, value, n, sum(n) OVER (PARTITION BY flow_sid, key) AS total, "
        "ROW_NUMBER() OVER (PARTITION BY flow_sid, key ORDER BY n DESC, value ASC NULLS LAST) AS rn "
        "FROM counted) "
        f"SELECT flow_sid, key, value, n, total FROM ranked WHERE rn <= {int(top_n)} ORDER BY flow_sid, key, rn"
    )
    return [
        TopValue(str(f), str(k), None if v is None else str(v), int(n), 100.0 * int(n) / int(total))
        for f, k, v, n, total in rows
    ]


def _version_column(t: _Tables) -> str | None:
    """The engagements column that times each version, or None when the dataset keeps no versions."""
    columns = t.columns("engagements")
    return next((c for c in VERSION_COLUMNS if c in columns), None)


def _utc_day(column: str) -> str:
    """SQL for the UTC calendar day of a timestamp with time zone, whatever the session's time zone."""
    return f"CAST(date_trunc('day', {column} AT TIME ZONE 'UTC') AS DATE)"


def _transitions(run: Runner, t: _Tables, version_column: str) -> tuple[list[Transition], list[ActiveTime]]:
    """Status changes between consecutive versions of each engagement, and how long the ended ones were active.

    Versions of one sid are ordered by version time; ties (one run loading a sid twice) by
    date_updated, then status, so the counts never depend on the order rows happen to come in.
    """
    versions = (
        "WITH v AS (SELECT sid, flow_sid, COALESCE(status, 'unknown') AS to_status, date_created, "
        f"date_updated, {quote_ident(version_column)} AS version_at, "
        "LAG(COALESCE(status, 'unknown'), 1, 'new') OVER (PARTITION BY sid "
        f"ORDER BY {quote_ident(version_column)}, date_updated NULLS FIRST, status) AS from_status "
        f"FROM {t['engagements']} WHERE sid IS NOT NULL AND {quote_ident(version_column)} IS NOT NULL) "
    )
    rows = run(
        f"{versions}SELECT {_utc_day('version_at')} AS day, flow_sid, from_status, to_status, count(*) "
        "FROM v GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    )
    transitions = [Transition(_as_date(day), str(flow), str(a), str(b), int(n)) for day, flow, a, b, n in rows]
    active = run(
        f"{versions}, ended AS (SELECT flow_sid, version_at, date_created, date_updated, ROW_NUMBER() OVER "
        "(PARTITION BY sid ORDER BY version_at, date_updated NULLS FIRST) AS rn "
        "FROM v WHERE from_status = 'active' AND to_status = 'ended'), "
        f"h AS (SELECT {_utc_day('version_at')} AS day, flow_sid, CAST((EXTRACT(EPOCH FROM date_updated) "
        "- EXTRACT(EPOCH FROM date_created)) / 3600.0 AS DOUBLE PRECISION) AS hours FROM ended "
        "WHERE rn = 1 AND date_updated IS NOT NULL AND date_created IS NOT NULL) "
        "SELECT day, flow_sid, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY hours) "
        "FROM h GROUP BY day, flow_sid ORDER BY day, flow_sid"
    )
    times = [ActiveTime(_as_date(day), str(flow), int(n), float(med)) for day, flow, n, med in active]
    return transitions, times


def _as_date(value: Any) -> date:
    return value.date() if isinstance(value, datetime) else date.fromisoformat(str(value)[:10])


# ----------------------------------------------------------------------------------------- as text
@dataclass(frozen=True)
class _Table:
    """A table as both renderers show it: a title, headers, rows of text, right-aligned columns."""

    title: str
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]
    numeric: frozenset[int] = frozenset()
    note: str | None = None


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3_600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86_400:
        return f"{seconds / 3_600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def _tables(data: ReportData) -> list[_Table]:
    """The report's tables, in the order both renderers show them."""
    name = data.flow_name
    flows = _Table(
        "Flows",
        ("Flow", "SID", "Engagements"),
        [(name(sid), sid, str(sum(s.count for s in data.status if s.flow_sid == sid))) for sid in data.flow_sids()],
        frozenset({2}),
    )
    per_day = _per_day_table(data)
    status = _Table(
        "Status share",
        ("Flow", "Status", "Engagements", "Percent"),
        [(name(s.flow_sid), s.status, str(s.count), f"{s.percent:.1f} %") for s in data.status],
        frozenset({2, 3}),
    )
    durations = _Table(
        "Time from created to last update (ended engagements)",
        ("Flow", "Count", "Median", "p90", "Mean"),
        [
            (
                name(d.flow_sid),
                str(d.count),
                _duration(d.median_seconds),
                _duration(d.p90_seconds),
                _duration(d.mean_seconds),
            )
            for d in data.durations
        ],
        frozenset({1, 2, 3, 4}),
        data.notes.get("durations"),
    )
    funnel = _Table(
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
    paths = _Table(
        f"Widget paths: the {data.top_n} most common transitions per flow (percent of the flow's steps)",
        ("Flow", "Widget that ran", "Went to", "Steps", "Percent"),
        [
            (
                name(p.flow_sid),
                _widget_label(p.from_widget),
                _widget_label(p.to_widget),
                str(p.count),
                f"{p.percent:.1f} %",
            )
            for p in data.paths
        ],
        frozenset({3, 4}),
        data.notes.get("paths"),
    )
    top = _Table(
        f"Top {data.top_n} flow-data values per key (scalar keys)",
        ("Flow", "Key", "Value", "Count", "Percent"),
        [
            (name(v.flow_sid), v.key, "(null)" if v.value is None else v.value, str(v.count), f"{v.percent:.1f} %")
            for v in data.top_values
        ],
        frozenset({3, 4}),
        data.notes.get("top_values"),
    )
    return [flows, per_day, status, durations, funnel, paths, top, *_history_tables(data)]


def _graph_title(data: ReportData, g: FlowGraph) -> str:
    return (
        f"Flow graph: {data.flow_name(g.flow_sid)}, revision {g.revision} "
        f"({g.engagements} of {g.all_engagements} engagements ran it)"
    )


def _graph_tables(data: ReportData) -> list[_Table]:
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
            _Table(
                _graph_title(data, g),
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
        out.append(_Table("Flow graphs", ("State",), [], frozenset(), data.notes.get("graphs")))
    return out


def _per_day_table(data: ReportData) -> _Table:
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
    return _Table(
        "Engagements per day (UTC, by date created)",
        ("Day", *(data.flow_name(sid) for sid in flows), "All flows"),
        rows,
        frozenset(range(1, len(flows) + 2)),
    )


def _widget_label(widget: str | None) -> str:
    return "(none)" if widget is None else widget


def _transition_label(from_status: str, to_status: str) -> str:
    return f"{from_status} -> {to_status}"


def _history_tables(data: ReportData) -> list[_Table]:
    """Status transitions and active times; just the note when the dataset keeps no versions."""
    name = data.flow_name
    title = "Status transitions per day (UTC, by version time"
    title += f": {data.version_column})" if data.version_column else ")"
    transitions = _Table(
        title,
        ("Day", "Flow", "From", "To", "Versions"),
        [(r.day.isoformat(), name(r.flow_sid), r.from_status, r.to_status, str(r.count)) for r in data.transitions],
        frozenset({4}),
        data.notes.get("transitions"),
    )
    if data.version_column is None:
        return [transitions]
    active = _Table(
        "Time active before ending (engagements with an active -> ended version, by that version's day)",
        ("Day", "Flow", "Engagements", "Median hours active"),
        [(a.day.isoformat(), name(a.flow_sid), str(a.count), f"{a.median_hours:.1f} h") for a in data.active_times],
        frozenset({2, 3}),
        data.notes.get("active_times"),
    )
    return [transitions, active]


def _text_table(table: _Table) -> str:
    lines = [table.title, "=" * min(len(table.title), 110)]
    if table.note and not table.rows:
        return "\n".join([*lines, table.note])
    widths = [len(h) for h in table.headers]
    for row in table.rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in table.numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines += [line(table.headers), line(["-" * w for w in widths]), *(line(r) for r in table.rows)]
    if table.note:
        lines.append(table.note)
    return "\n".join(lines)


def render_text(data: ReportData) -> str:
    """The report as fixed-width tables for a terminal."""
    head = (
        f"Twilio Studio report: dataset {data.dataset}, {data.total_engagements} engagements in "
        f"{len(data.flow_sids())} flows (generated {data.generated_at:%Y-%m-%d %H:%M} UTC)"
    )
    return "\n\n".join([head, *(_text_table(t) for t in [*_tables(data), *_graph_tables(data)])]) + "\n"


# ----------------------------------------------------------------------------------------- as HTML
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } th { background: #f3f3f3; }
img { max-width: 100%; display: block; margin: 1em 0; } .note { color: #666; font-style: italic; }
"""


def _html_table(table: _Table, heading: bool = True) -> str:
    parts = [f"<h2>{html.escape(table.title)}</h2>"] if heading else []
    if table.rows:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
        body = "".join(
            "<tr>"
            + "".join(
                f'<td class="num">{html.escape(c)}</td>' if i in table.numeric else f"<td>{html.escape(c)}</td>"
                for i, c in enumerate(row)
            )
            + "</tr>"
            for row in table.rows
        )
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    if table.note:
        parts.append(f'<p class="note">{html.escape(table.note)}</p>')
    return "\n".join(parts)


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


def _chart_per_day(data: ReportData) -> Figure | None:
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


def _chart_status(data: ReportData) -> Figure | None:
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


def _chart_funnel(data: ReportData, flow_sid: str) -> Figure | None:
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


def _chart_paths(data: ReportData, flow_sid: str) -> Figure | None:
    edges = [p for p in data.paths if p.flow_sid == flow_sid]
    if not edges:
        return None
    fig = _figure(9, 1.2 + 0.4 * len(edges))
    ax = fig.add_subplot()
    labels = [f"{_widget_label(p.from_widget)} -> {_widget_label(p.to_widget)}" for p in edges]
    ax.barh(range(len(edges)), [p.count for p in edges], color="#54a24b")
    ax.set_yticks(range(len(edges)), labels)  # by position: two edges never share a bar
    ax.invert_yaxis()
    ax.set_xlabel("steps")
    ax.set_title(f"Widget paths: {data.flow_name(flow_sid)}")
    return fig


def _chart_durations(data: ReportData) -> Figure | None:
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


def _chart_transitions(data: ReportData) -> Figure | None:
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
            ax.bar(labels, heights, bottom=bottom, width=0.6, color=colors[key], label=_transition_label(*key))
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax.set_ylabel(ylabel)
        ax.set_xlim(-0.75, len(days) - 0.25)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    axes[0].set_title("Status transitions per day (UTC, all flows)")
    axes[-1].tick_params(axis="x", labelrotation=45)
    return fig


def _graph_sections(data: ReportData) -> list[str]:
    """Per flow: the graph as designed, drawn, then the same as a table."""
    out = []
    for g, table in zip(data.graphs, _graph_tables(data), strict=False):
        heading = f"<h2>{html.escape(table.title)}</h2>"
        out += [heading, _charts([graph_figure(g, table.title)]), _html_table(table, heading=False)]
    if not data.graphs:
        out += [_html_table(t) for t in _graph_tables(data)]
    return out


def _charts(figures: Iterable[Figure | None]) -> str:
    return "\n".join(_png(f) for f in figures if f is not None)


def render_html(data: ReportData) -> str:
    """The report as one self-contained HTML page: tables and PNG charts inline, nothing fetched.

    Raises:
        ImportError: matplotlib is not installed.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "render_html draws its charts with matplotlib, which is not installed: "
            "pip install 'matplotlib>=3.8,<4' (or use render_text)"
        ) from e
    flows, per_day, status, durations, funnel, paths, top, *history = _tables(data)
    title = f"Twilio Studio report: {data.dataset}"
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{data.total_engagements} engagements in {len(data.flow_sids())} flows; "
        f"generated {data.generated_at:%Y-%m-%d %H:%M} UTC.</p>",
        _html_table(flows),
        _charts([_chart_per_day(data)]),
        _html_table(per_day),
        _charts([_chart_status(data)]),
        _html_table(status),
        _charts([_chart_durations(data)]),
        _html_table(durations),
        _charts(_chart_funnel(data, sid) for sid in data.flow_sids()),
        _html_table(funnel),
        _charts(_chart_paths(data, sid) for sid in data.flow_sids()),
        _html_table(paths),
        *_graph_sections(data),
        _html_table(top),
        _charts([_chart_transitions(data)]),
        *(_html_table(h) for h in history),
    ]
    body = "\n".join(s for s in sections if s)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def write_report(data: ReportData, path: str | Path) -> Path:
    """Writes the HTML report to ``path`` (UTF-8) and returns the path."""
    out = Path(path)
    out.write_text(render_html(data), encoding="utf-8")
    logger.info("report written to %s", out)
    return out
