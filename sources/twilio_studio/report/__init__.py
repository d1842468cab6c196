"""A usage report over a loaded Studio dataset.

Volume, outcomes, durations, widget funnels, the most common widget-to-widget transitions (when
steps were loaded), flow graphs, flow data, and status transitions over time when the dataset
keeps versions (``write_mode`` scd2 or append).

    read = duckdb_reader("studio.duckdb", "twilio_studio")
    data = build_report(read, "twilio_studio")
    print(render_text(data))
    write_report(data, "report.html")

One module per concern:

- ``readers``: where rows come from. A ``SqlReader`` is any callable that takes one SQL query and
  returns its rows: ``duckdb_reader`` (a DuckDB file, read-only) or ``dlt_reader`` (a pipeline's
  own SQL client: every SQL destination dlt can read back).
- ``queries``: ``build_report``, the SQL (unchanged on DuckDB and PostgreSQL) that fills a
  ``ReportData`` (``model``); ``graphs``: each flow's design with its counts, and its SQL.
- ``layout``: the report's tables as both renderers show them; ``text``: ``render_text``, for a
  terminal; ``page``: ``render_html`` and ``write_report``, one self-contained HTML file;
  ``charts``: its matplotlib charts (the ``charts`` extra; without it the page has tables only).

The report never reads the contact's address or the raw ``context``.
"""

from __future__ import annotations

from twilio_studio.report.graphs import (
    FROM_CONTEXT_NOTE,
    NO_DEFINITIONS_NOTE,
    NO_PATHS_NOTE,
    FlowGraph,
    GraphEdge,
    GraphState,
)
from twilio_studio.report.model import (
    ALL_FLOWS,
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
from twilio_studio.report.page import NO_CHARTS_NOTE, render_html, write_report
from twilio_studio.report.queries import (
    NO_ACTIVE_TO_ENDED_NOTE,
    NO_DURATIONS_NOTE,
    NO_FLOW_DATA_NOTE,
    NO_STEPS_NOTE,
    NO_VERSIONS_NOTE,
    NO_WIDGETS_NOTE,
    build_report,
)
from twilio_studio.report.readers import SqlReader, dlt_reader, duckdb_reader, quote_ident, quote_literal
from twilio_studio.report.text import render_text

__all__ = [
    "ALL_FLOWS",
    "FROM_CONTEXT_NOTE",
    "NO_ACTIVE_TO_ENDED_NOTE",
    "NO_CHARTS_NOTE",
    "NO_DEFINITIONS_NOTE",
    "NO_DURATIONS_NOTE",
    "NO_FLOW_DATA_NOTE",
    "NO_PATHS_NOTE",
    "NO_STEPS_NOTE",
    "NO_VERSIONS_NOTE",
    "NO_WIDGETS_NOTE",
    "ActiveTime",
    "DayCount",
    "DurationBucket",
    "DurationStats",
    "FlowGraph",
    "FunnelStep",
    "GraphEdge",
    "GraphState",
    "PathStep",
    "ReportData",
    "SqlReader",
    "StatusShare",
    "TopValue",
    "Transition",
    "build_report",
    "dlt_reader",
    "duckdb_reader",
    "quote_ident",
    "quote_literal",
    "render_html",
    "render_text",
    "write_report",
]
