"""The report's numbers: SQL that runs unchanged on DuckDB and PostgreSQL, read through a ``SqlReader``.

Every section but the status transitions counts each engagement once, in its current version: in an
scd2 dataset the version with ``valid_to`` NULL, in an append dataset the latest snapshot by
``snapshot_at``, with only the child rows (widgets, flow data) of that version. The queries never
read the contact's address or the raw ``context``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from twilio_studio.report.graphs import build_graphs
from twilio_studio.report.model import (
    ALL_FLOWS,
    DURATION_BUCKETS,
    ActiveTime,
    DayCount,
    DurationBucket,
    DurationStats,
    FunnelStep,
    PathStep,
    ReportData,
    StatusShare,
    TopValue,
    Transition,
)
from twilio_studio.report.readers import SqlReader, quote_ident, quote_literal

logger = logging.getLogger("twilio_studio.report")

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


class _Tables:
    """Qualified names of the dataset's tables, which of them exist, and their columns."""

    def __init__(self, read: SqlReader, dataset: str) -> None:
        self.dataset = dataset
        rows = read(
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


def build_report(read: SqlReader, dataset: str, top_n: int = 10) -> ReportData:
    """Computes the report's numbers from a loaded dataset.

    Args:
        read: Reads rows from the destination, e.g. ``duckdb_reader`` or ``dlt_reader``.
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
    t = _Tables(read, dataset)
    if "engagements" not in t:
        raise ValueError(
            f"dataset {dataset!r} has no engagements table: pass the destination and the dataset_name "
            "the pipeline loaded into (the default dataset is 'twilio_studio'), and run it at least once"
        )
    notes: dict[str, str] = {}
    version_column = _version_column(t)
    current = _Current(t, version_column)
    status = _status_shares(read, current)
    durations, buckets = _durations(read, current)
    if not durations:
        notes["durations"] = NO_DURATIONS_NOTE
    funnel, entered = _funnel(read, current) if "engagements__widgets" in t else ([], {})
    if not funnel:
        notes["funnel"] = NO_WIDGETS_NOTE
    paths = _paths(read, t, top_n) if "engagement_steps" in t else []
    if not paths:
        notes["paths"] = NO_STEPS_NOTE
    top = _top_values(read, current, top_n) if "engagements__flow_data" in t else []
    if not top:
        notes["top_values"] = NO_FLOW_DATA_NOTE
    widgets = current.child("engagements__widgets", ("engagement_sid", "name", "position"))
    graphs, graph_note = build_graphs(
        read, t.__getitem__, t.__contains__, current.engagements, widgets if "engagements__widgets" in t else None
    )
    if graph_note:
        notes["graphs"] = graph_note
    transitions: list[Transition] = []
    active_times: list[ActiveTime] = []
    if version_column is None:
        notes["transitions"] = NO_VERSIONS_NOTE
    else:
        transitions, active_times = _transitions(read, t, version_column)
        if not active_times:
            notes["active_times"] = NO_ACTIVE_TO_ENDED_NOTE
    data = ReportData(
        dataset=dataset,
        top_n=top_n,
        flow_names=_flow_names(read, t),
        total_engagements=sum(s.count for s in status if s.flow_sid is ALL_FLOWS),
        per_day=_per_day(read, current),
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


def _flow_names(read: SqlReader, t: _Tables) -> dict[str, str]:
    if "flows" not in t:
        return {}
    return {str(sid): str(name) for sid, name in read(f"SELECT sid, friendly_name FROM {t['flows']}") if name}


def _per_day(read: SqlReader, cur: _Current) -> list[DayCount]:
    rows = read(
        f"SELECT {_utc_day('date_created')} AS day, flow_sid, "
        f"count(*) FROM {cur.engagements} e WHERE date_created IS NOT NULL "
        "GROUP BY 1, 2 ORDER BY 1, 2"
    )
    return [DayCount(_as_date(day), str(flow), int(n)) for day, flow, n in rows]


def _status_shares(read: SqlReader, cur: _Current) -> list[StatusShare]:
    rows = read(
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


def _durations(read: SqlReader, cur: _Current) -> tuple[list[DurationStats], list[DurationBucket]]:
    seconds = (
        "WITH d AS (SELECT flow_sid, CAST(EXTRACT(EPOCH FROM date_updated) - EXTRACT(EPOCH FROM date_created) "
        f"AS DOUBLE PRECISION) AS seconds FROM {cur.engagements} e "
        "WHERE status = 'ended' AND date_updated IS NOT NULL AND date_created IS NOT NULL) "
    )
    stats = (
        "count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds), "
        "percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds), avg(seconds) FROM d"
    )
    per_flow = read(f"{seconds}SELECT flow_sid, {stats} GROUP BY flow_sid ORDER BY flow_sid")
    overall = read(f"{seconds}SELECT {stats}")
    out = [
        DurationStats(str(flow), int(n), float(med), float(p90), float(mean)) for flow, n, med, p90, mean in per_flow
    ]
    if out:
        n, med, p90, mean = overall[0]
        out.insert(0, DurationStats(ALL_FLOWS, int(n), float(med), float(p90), float(mean)))
    cases = " ".join(
        f"WHEN seconds < {bound} THEN {i}" for i, (bound, _) in enumerate(DURATION_BUCKETS) if bound is not None
    )
    rows = read(
        f"{seconds}SELECT flow_sid, CASE {cases} ELSE {len(DURATION_BUCKETS) - 1} END AS bucket, count(*) "
        "FROM d GROUP BY 1, 2 ORDER BY 1, 2"
    )
    buckets = [DurationBucket(str(flow), DURATION_BUCKETS[int(b)][1], int(n)) for flow, b, n in rows]
    return out, buckets


def _funnel(read: SqlReader, cur: _Current) -> tuple[list[FunnelStep], dict[str, int]]:
    widgets = cur.child("engagements__widgets", ("engagement_sid", "flow_sid", "name", "position"))
    reached = read(
        "SELECT flow_sid, name, count(DISTINCT engagement_sid), min(position), "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY position) "
        f"FROM {widgets} w GROUP BY flow_sid, name"
    )
    stopped_rows = read(
        "WITH ranked AS (SELECT w.flow_sid, w.name, ROW_NUMBER() OVER "
        "(PARTITION BY w.engagement_sid ORDER BY w.position DESC, w.name) AS rn "
        f"FROM {widgets} w JOIN {cur.engagements} e ON e.sid = w.engagement_sid WHERE e.status = 'ended') "
        "SELECT flow_sid, name, count(*) FROM ranked WHERE rn = 1 GROUP BY flow_sid, name"
    )
    entered_rows = read(f"SELECT flow_sid, count(DISTINCT engagement_sid) FROM {widgets} w GROUP BY flow_sid")
    stopped = {(str(f), str(w)): int(n) for f, w, n in stopped_rows}
    ordered = sorted(reached, key=lambda r: (str(r[0]), float(r[4]), int(r[3]), str(r[1])))
    steps = [
        FunnelStep(str(f), str(w), float(median), int(n), stopped.get((str(f), str(w)), 0))
        for f, w, n, _, median in ordered
    ]
    return steps, {str(f): int(n) for f, n in entered_rows}


def _paths(read: SqlReader, t: _Tables, top_n: int) -> list[PathStep]:
    """The ``top_n`` most common ``transitioned_from -> transitioned_to`` pairs of each flow's steps.

    Steps merge on their sid in every write mode: each step counts once. Ties are broken by the
    widget names in Python, so DuckDB and PostgreSQL (whose collations differ) rank alike.
    """
    rows = read(
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


def _top_values(read: SqlReader, cur: _Current, top_n: int) -> list[TopValue]:
    # a plain value has path '' (a PostgreSQL load may have stored that '' as NULL)
    flow_data = cur.child("engagements__flow_data", ("flow_sid", "key", "path", "value"))
    rows = read(
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


def _transitions(read: SqlReader, t: _Tables, version_column: str) -> tuple[list[Transition], list[ActiveTime]]:
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
    rows = read(
        f"{versions}SELECT {_utc_day('version_at')} AS day, flow_sid, from_status, to_status, count(*) "
        "FROM v GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    )
    transitions = [Transition(_as_date(day), str(flow), str(a), str(b), int(n)) for day, flow, a, b, n in rows]
    active = read(
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
