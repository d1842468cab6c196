"""The report's flow graphs, from steps when loaded, from the context otherwise.

The design of the revision most engagements ran, counts on every transition, drop-off by widget
type; DuckDB and PostgreSQL alike.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dlt
import pytest

from tests.kit.duck import Loaded
from tests.kit.studio import listed_views, make_source
from twilio_studio.emulator import Dataset, Emulator
from twilio_studio.emulator.dataset import EngagementView
from twilio_studio.report import (
    FROM_CONTEXT_NOTE,
    NO_DEFINITIONS_NOTE,
    FlowGraph,
    ReportData,
    build_report,
    dlt_reader,
    duckdb_reader,
    render_html,
    render_text,
)

DATASET = "twilio_studio"
POSTGRES_URL = os.environ.get("TWILIO_STUDIO_TEST_POSTGRES")
WITH_STEPS = ("flows", "flow_revisions", "engagements", "engagement_steps")


@dataclass
class Graphs:
    """The emulator and the graphs the report built from its load."""

    emu: Emulator
    steps: ReportData  # loaded with engagement_steps
    context: ReportData  # default resources: no steps
    views: list[EngagementView]


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graphs]:
    with Emulator(Dataset(seed=31, flows=3, engagements_per_flow=250, traffic="shaped")) as emu:
        with_steps = Loaded(tmp_path_factory.mktemp("graph_steps"))
        with_steps.run(make_source(emu.base_url).with_resources(*WITH_STEPS))
        default = Loaded(tmp_path_factory.mktemp("graph_default"))
        default.run(make_source(emu.base_url))
        yield Graphs(
            emu,
            build_report(duckdb_reader(with_steps.db, DATASET), DATASET),
            build_report(duckdb_reader(default.db, DATASET), DATASET),
            listed_views(emu),
        )


def main_revision(views: list[EngagementView], flow_sid: str) -> tuple[int, list[EngagementView]]:
    """The revision most of the flow's engagements ran, and those engagements."""
    mine = [v for v in views if v.script.flow.sid == flow_sid]
    counts = Counter(v.script.flow_version for v in mine)
    revision = max(counts, key=lambda r: (counts[r], r))
    return revision, [v for v in mine if v.script.flow_version == revision]


def graph_of(report: ReportData, flow_sid: str) -> FlowGraph:
    (graph,) = [g for g in report.graphs if g.flow_sid == flow_sid]
    return graph


@pytest.mark.slow
@pytest.mark.parametrize("flow_index", range(3), ids=[f"flow_{i}" for i in range(3)])
def test_graph_counts_every_transition_taken_from_steps(graphs: Graphs, flow_index: int) -> None:
    flow = graphs.emu.dataset.flows[flow_index]
    revision, ran = main_revision(graphs.views, flow.sid)
    graph = graph_of(graphs.steps, flow.sid)
    assert (graph.revision, graph.engagements, graph.from_steps) == (revision, len(ran), True)
    design = flow.revisions[revision - 1]
    taken = Counter(
        (s.widget.name, s.event, None if s.transitioned_to == "Ended" else s.transitioned_to)
        for v in ran for s in v.steps
    )  # fmt: skip
    got = {(e.from_state, e.event, e.to_state): e.count for e in graph.edges if e.count}
    assert got == dict(taken)
    designed = {(s.name, t.event, t.next) for s in design.states for t in s.transitions}
    assert all(e.designed == ((e.from_state, e.event, e.to_state) in designed) for e in graph.edges)
    assert all(e.designed for e in graph.edges), "an engagement of a revision walks only that revision"
    assert graph.states[0].name == "Trigger"


@pytest.mark.parametrize("flow_index", range(3), ids=[f"flow_{i}" for i in range(3)])
def test_drop_off_is_labelled_with_the_widget_type_and_event(graphs: Graphs, flow_index: int) -> None:
    flow = graphs.emu.dataset.flows[flow_index]
    _, ran = main_revision(graphs.views, flow.sid)
    graph = graph_of(graphs.steps, flow.sid)
    for state in graph.states:
        runs = [s for v in ran for s in v.steps if s.widget.name == state.name]
        ended = Counter(s.event for s in runs if s.transitioned_to == "Ended")
        assert state.ran == len(runs)
        if not ended:
            assert state.drop_off() == ""
            continue
        shares = ", ".join(
            f"{100.0 * n / len(runs):.0f}% {event}"
            for event, n in sorted(ended.items(), key=lambda kv: (-kv[1], kv[0]))
        )
        assert state.drop_off() == f"{state.type}: {shares}"
    labels = [s.drop_off() for s in graph.states]
    assert any(" timeout" in label for label in labels), labels  # e.g. "gather-input-on-call: 20% timeout"


@pytest.mark.parametrize("flow_index", range(3), ids=[f"flow_{i}" for i in range(3)])
def test_without_steps_the_graph_comes_from_the_context_and_says_so(graphs: Graphs, flow_index: int) -> None:
    flow = graphs.emu.dataset.flows[flow_index]
    revision, ran = main_revision(graphs.views, flow.sid)
    graph = graph_of(graphs.context, flow.sid)
    assert (graph.revision, graph.from_steps) == (revision, False)
    reached = Counter(name for v in ran for name in v.context["widgets"])
    assert {s.name: s.ran for s in graph.states if s.name != "Trigger" and s.ran} == dict(reached)
    ended = Counter(list(v.context["widgets"])[-1] for v in ran if v.status == "ended" and v.context["widgets"])
    assert {s.name: sum(s.ended.values()) for s in graph.states if s.ended} == dict(ended)
    design = flow.revisions[revision - 1]
    for state in graph.states:
        if state.ended:  # the event is unknown: the label names the branches that end there by design
            ending = " or ".join(t.event for t in design.by_name[state.name].transitions if t.next is None)
            assert list(state.ended) == [ending]
    gathers = [s.drop_off() for s in graph.states if s.type == "gather-input-on-call" and s.ended]
    assert all(label.endswith("% timeout") for label in gathers)
    assert graphs.context.notes["graphs"] == FROM_CONTEXT_NOTE
    assert FROM_CONTEXT_NOTE in render_text(graphs.context)
    assert "graphs" not in graphs.steps.notes


@pytest.mark.slow
def test_graphs_render_as_a_picture_and_a_table_per_flow(graphs: Graphs) -> None:
    page = render_html(graphs.steps)
    text = render_text(graphs.steps)
    for flow in graphs.emu.dataset.flows:
        graph = graph_of(graphs.steps, flow.sid)
        title = f"Flow graph: {flow.friendly_name}, revision {graph.revision}"
        assert page.count(f'<img alt="{title}') == 1 and title in text
        for state in graph.states:
            if state.drop_off():
                assert state.drop_off() in text


def test_engagements_per_day_is_one_row_per_day(graphs: Graphs) -> None:
    text = render_text(graphs.steps)
    block = text.split("Engagements per day (UTC, by date created)\n")[1].split("\n\n")[0].splitlines()
    header, _, *rows = block[1:]
    days = sorted({d.day for d in graphs.steps.per_day})
    assert [r.split()[0] for r in rows] == [d.isoformat() for d in days]
    for flow in graphs.emu.dataset.flows:
        assert flow.friendly_name in header
    assert header.rstrip().endswith("All flows")
    assert sum(int(r.split()[-1]) for r in rows) == graphs.steps.total_engagements


def test_without_definitions_the_page_says_how_to_get_them(tmp_path: Path) -> None:
    with Emulator(Dataset(seed=2, flows=2, engagements_per_flow=30)) as emu:
        loaded = Loaded(tmp_path)
        loaded.run(make_source(emu.base_url).with_resources("flows", "engagements"))
    report = build_report(duckdb_reader(loaded.db, DATASET), DATASET)
    assert report.graphs == [] and report.notes["graphs"] == NO_DEFINITIONS_NOTE
    assert NO_DEFINITIONS_NOTE in render_text(report)


@pytest.mark.slow
def test_postgres_gives_the_same_graphs(graphs: Graphs, tmp_path: Path) -> None:
    if not POSTGRES_URL:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but TWILIO_STUDIO_TEST_POSTGRES is not set: .ci/run must start PostgreSQL")
        pytest.skip("set TWILIO_STUDIO_TEST_POSTGRES to run the PostgreSQL tests")
    dataset = f"ts_graph_{uuid.uuid4().hex[:10]}"
    destination = dlt.destinations.postgres(credentials=POSTGRES_URL)
    pipelines = str(tmp_path / "pg_pipelines")
    pipeline = dlt.pipeline(
        pipeline_name=f"pg_{dataset}", destination=destination, dataset_name=dataset, pipelines_dir=pipelines
    )
    try:
        pipeline.run(make_source(graphs.emu.base_url).with_resources(*WITH_STEPS))
        report = build_report(dlt_reader(pipeline.pipeline_name, destination, dataset, pipelines), dataset)
    finally:
        with pipeline.sql_client() as client:
            client.execute_sql(f'DROP SCHEMA IF EXISTS "{dataset}" CASCADE')
            client.execute_sql(f'DROP SCHEMA IF EXISTS "{dataset}_staging" CASCADE')
    assert report.graphs == graphs.steps.graphs


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_the_page_renders_in_headless_chromium(graphs: Graphs, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(graphs.steps), encoding="utf-8")
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=1280,4000", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000  # a page with charts, not a blank one
