"""The results as tables: plain text for the terminal, Markdown for BENCHMARKS.md.

The Markdown goes between BENCHMARKS.md's ``benchmark-results`` markers, the rest of the file left
as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.catalogue import Sizes, shaped
from benchmarks.harness import Case
from benchmarks.targets import Target, per_shape, ratio
from twilio_studio.settings import DEFAULT_MAX_CONCURRENCY

BEGIN, END = "<!-- benchmark-results:begin -->", "<!-- benchmark-results:end -->"


def fmt(value: float | None, digits: int = 1) -> str:
    """A number with ``digits`` decimals, or "-" for None."""
    return "-" if value is None else f"{value:.{digits}f}"


def case_rows(cases: list[Case]) -> list[list[str]]:
    """One table row per case: its measurements as text."""
    rows = []
    for c in cases:
        steps = c.result.get("steps", {})
        split = (
            "/".join(fmt(steps.get(k)) for k in ("extract", "normalize", "load"))
            if c.kind != "floor"
            else (f"fetch {fmt(steps.get('fetch'))} / read_json {fmt(steps.get('read_json'))}")
        )
        rows.append([
            c.id, c.title, fmt(c.wall_seconds), fmt(c.result.get("run_seconds")), split, f"{c.rss_mb:.0f}",
            f"{c.db_rows if c.db_rows is not None else '-'} / {c.expected_rows}"
            if c.id not in ("3", "3s")
            else f"{c.result.get('written', {}).get('engagements', '-')} / {c.expected_rows} written",
            "yes" if c.ok else ("did not finish: " + c.killed) if c.killed
            else ("NO: " + (c.error[:80] or ", ".join(k for k, v in c.checks.items() if not v))),
        ])  # fmt: skip
    return rows


CASE_HEADER = ["case", "what", "wall s", "run s", "extract/normalize/load s", "peak RSS MB", "engagements",
               "verified"]  # fmt: skip


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """``rows`` under ``header`` as fixed-width text columns."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]

    def line(r: list[str]) -> str:
        return "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """``rows`` under ``header`` as a Markdown table, pipes in cells escaped."""

    def esc(x: str) -> str:
        return str(x).replace("|", "\\|")

    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(esc(x) for x in r) + " |" for r in rows]
    return "\n".join(out)


def target_rows(ts: list[Target]) -> list[list[str]]:
    """One table row per target: name, goal, measurement and PASS, FAIL or n/a."""
    return [[t.name, t.goal, t.measured, "n/a" if t.passed is None else "PASS" if t.passed else "FAIL"] for t in ts]


def emulator_rows(run: dict[str, Any]) -> list[list[str]]:
    """One table row per case: the emulator's traffic and the CPU of the emulator, the case and others."""
    rows = []
    for c in run["cases"]:
        e = c.emulator
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(e.get("by_status", {}).items()))
        rows.append([c.id, str(e.get("requests", "-")), statuses, str(e.get("max_in_flight", "-")),
                     fmt(e.get("cpu_seconds")), f"{100 * e.get('cpu_seconds', 0) / c.wall_seconds:.0f}%"
                     if c.wall_seconds else "-", fmt(c.cpu_seconds), fmt(c.others_cpu_seconds),
                     fmt(c.loadavg_before, 2)])  # fmt: skip
    return rows


EMULATOR_HEADER = ["case", "API requests", "by status", "max in flight (so far)", "emulator CPU s",
                   "emulator CPU / wall", "case CPU s", "others' CPU s", "load before"]  # fmt: skip


SHAPE_HEADER = ["shape", "list item B", "context B", "child rows / engagement", "floor wall s",
                "library wall s (x floor)", "CLI wall s (x floor)", "library us / child row",
                "CLI us / child row"]  # fmt: skip


def shape_rows(run: dict[str, Any]) -> list[list[str]]:
    """Per context shape: its size, child rows per engagement and each path's cost per child row.

    Child rows are counted in the CLI's DuckDB file: the four child tables, tombstones excluded, /
    engagements.
    """
    by_id: dict[str, Case] = {c.id: c for c in run["cases"]}
    rows = []
    for shape in run["sizes"]["shapes"]:
        floor, lib, cli = (by_id.get(shaped(x, shape)) for x in ("1c", "1l", "1a"))
        measured = [c for c in (cli, lib) if c is not None and c.ok and c.child_rows is not None]
        if not measured and not (floor and floor.ok):
            continue
        size = run.get("context_bytes", {}).get(shape, {})
        per = per_shape(measured[0], floor)["child_rows_per_engagement"] if measured else None
        rows.append([shape, f"{size.get('engagement', 0):,}", f"{size.get('context', 0):,}", fmt(per),
                     fmt(floor.wall_seconds) if floor and floor.ok else "-", _wall(lib, floor), _wall(cli, floor),
                     _cost(lib, floor), _cost(cli, floor)])  # fmt: skip
    return rows


def _wall(c: Case | None, floor: Case | None) -> str:
    if c is None or not c.ok:
        return "-"
    x = f" ({ratio(c.wall_seconds, floor.wall_seconds):.2f}x)" if floor and floor.ok else ""
    return f"{c.wall_seconds:.1f}{x}"


def _cost(c: Case | None, floor: Case | None) -> str:
    return fmt(per_shape(c, floor)["us_per_child_row"], 2) if c is not None and c.ok else "-"


def throughput(run: dict[str, Any]) -> str:
    """The emulator's throughput as the floor case measured it; "" when the floor did not run."""
    floor = next((c for c in run["cases"] if c.id == "1c" and c.ok), None)
    if floor is None:
        return ""
    fetch = floor.result["steps"]["fetch"]
    mb = floor.result.get("bytes", 0) / 1e6
    return (f"Emulator throughput (the floor's sequential walk, one connection): {floor.db_rows / fetch:,.0f} "
            f"engagements/s, {mb / fetch:.1f} MB/s of JSON ({floor.result.get('pages')} pages, {mb:.0f} MB, "
            f"{fetch:.1f} s; {floor.emulator.get('cpu_seconds', 0):.1f} s of emulator CPU).")  # fmt: skip


def report(run: dict[str, Any], m: dict[str, Any], command: str, s: Sizes, ts: list[Target], markdown: bool) -> str:
    """The whole results report (machine, versions, command, cases, targets), as Markdown or text."""
    table = md_table if markdown else text_table
    v = m["versions"]
    lines = [
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB RAM, {m['os']}",
        f"Versions: Python {m['python']}, dlt {v['dlt']}, duckdb {v['duckdb']}, pyarrow {v['pyarrow']}, "
        f"requests {v['requests']}, orjson {v['orjson']}; commit {m['commit']}; {m['date']}",
        f"Command: `{command}`" if markdown else f"Command: {command}",
        f"Sizes: case 1/3 {s.flows} flows x {s.per_flow:,} engagements, PageSize {s.page_size}, zero latency, "
        f"shapes {', '.join(s.shapes)}; {s.big_shape} shape at {s.big:,} "
        f"(1a4/1l4); write modes on the {s.write_shape} shape"
        + f"; case 2 {s.latency_flows} flows x {s.latency_per_flow:,} engagements, PageSize {s.latency_page_size}, "
        f"{s.latency * 1000:.0f} ms per request, our max_concurrency {DEFAULT_MAX_CONCURRENCY}, "
        f"emulator cap in 2c {s.throttle_cap}.",
    ]
    if markdown:
        lines = [f"- {x}" for x in lines]
    out = "\n".join(lines) + "\n\n"
    out += ("### Cases\n\n" if markdown else "") + table(CASE_HEADER, case_rows(run["cases"])) + "\n\n"
    shapes = shape_rows(run)
    if shapes:
        out += ("### Context shapes\n\n" if markdown else "Context shapes\n") + table(SHAPE_HEADER, shapes)
        out += (
            "\n\nus / child row: (the case's wall - the shape's floor wall) / child rows; child rows counted "
            "in the DuckDB file after the load (four child tables, tombstones excluded).\n\n"
        )
    out += ("### Targets\n\n" if markdown else "Targets\n") + table(["target", "goal", "measured", ""],
                                                                  target_rows(ts)) + "\n\n"  # fmt: skip
    out += ("### Emulator and machine\n\n" if markdown else "Emulator (separate process) and machine\n") + table(
        EMULATOR_HEADER, emulator_rows(run)) + "\n"  # fmt: skip
    tp = throughput(run)
    if tp:
        out += "\n" + tp + "\n"
    for c in run["cases"]:
        for note in c.notes:
            out += ("\n- " if markdown else "\n") + f"{c.id}: {note}"
    return out.rstrip() + "\n"


def write_markdown(path: Path, body: str) -> None:
    """Writes ``body`` between the results markers of the file at ``path``, the rest of it kept."""
    block = f"{BEGIN}\n{body}{END}"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            path.write_text(head + block + tail)
            return
    path.write_text("# Benchmarks\n\nWritten by `python -m benchmarks.run` (see benchmarks/run.py).\n\n" + block + "\n")
