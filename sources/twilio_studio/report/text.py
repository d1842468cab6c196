"""The report as fixed-width text for a terminal; needs nothing beyond the standard library."""

from __future__ import annotations

from collections.abc import Sequence

from twilio_studio.report.layout import Table, graph_tables, tables
from twilio_studio.report.model import ReportData


def _text_table(table: Table) -> str:
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
    return "\n\n".join([head, *(_text_table(t) for t in [*tables(data), *graph_tables(data)])]) + "\n"
