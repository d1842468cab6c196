"""The report as one self-contained HTML page; nothing is fetched from anywhere.

Its tables (``layout``), and its charts inline as PNG (``charts``) when matplotlib is installed.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twilio_studio.report import charts
from twilio_studio.report.layout import Table, graph_tables, tables
from twilio_studio.report.model import ReportData

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger("twilio_studio.report")

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } th { background: #f3f3f3; }
img { max-width: 100%; display: block; margin: 1em 0; } .note { color: #666; font-style: italic; }
"""
NO_CHARTS_NOTE = (
    "This page has no charts: they are drawn with matplotlib, which is not installed here. "
    f"Install it with {charts.INSTALL_HINT} and write the report again."
)
Charts = Callable[[], Iterable["Figure | None"]]


def _html_table(table: Table, heading: bool = True) -> str:
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


def _one(make: Callable[..., Figure], *args: Any) -> list[Figure]:
    return [make(*args)]


def _graph_sections(data: ReportData, draw: Callable[[Charts], str]) -> list[str]:
    """Per flow: the graph as designed, drawn, then the same as a table."""
    out = []
    for g, table in zip(data.graphs, graph_tables(data), strict=False):
        heading = f"<h2>{html.escape(table.title)}</h2>"
        out += [heading, draw(partial(_one, charts.graph_figure, g, table.title)), _html_table(table, heading=False)]
    if not data.graphs:
        out += [_html_table(t) for t in graph_tables(data)]
    return out


def render_html(data: ReportData) -> str:
    """The report as one self-contained HTML page: tables and PNG charts inline, nothing fetched.

    Without matplotlib (the ``charts`` extra) the page has the same tables, no charts, and a note
    at the top that says how to get them.
    """
    drawn = charts.available()
    if not drawn:
        logger.warning("the HTML report has no charts: matplotlib is not installed (%s)", charts.INSTALL_HINT)

    def draw(make: Charts) -> str:
        return charts.images(make()) if drawn else ""

    flows, per_day, status, durations, funnel, paths, top, *history = tables(data)
    sids = data.flow_sids()
    title = f"Twilio Studio report: {data.dataset}"
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{data.total_engagements} engagements in {len(sids)} flows; "
        f"generated {data.generated_at:%Y-%m-%d %H:%M} UTC.</p>",
        "" if drawn else f'<p class="note">{html.escape(NO_CHARTS_NOTE)}</p>',
        _html_table(flows),
        draw(lambda: [charts.chart_per_day(data)]),
        _html_table(per_day),
        draw(lambda: [charts.chart_status(data)]),
        _html_table(status),
        draw(lambda: [charts.chart_durations(data)]),
        _html_table(durations),
        draw(lambda: (charts.chart_funnel(data, sid) for sid in sids)),
        _html_table(funnel),
        draw(lambda: (charts.chart_paths(data, sid) for sid in sids)),
        _html_table(paths),
        *_graph_sections(data, draw),
        _html_table(top),
        draw(lambda: [charts.chart_transitions(data)]),
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
