"""The report's numbers against direct SQL on the same DuckDB and against the emulator's own dataset."""

from __future__ import annotations

import html
import logging
import math
import os
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest

from tests.kit.duck import Loaded
from tests.kit.postgres import postgres_url
from tests.kit.studio import expected_sids, listed_views, make_source
from twilio_studio.emulator import Dataset, Emulator
from twilio_studio.emulator.dataset import EngagementView
from twilio_studio.report import (
    NO_ACTIVE_TO_ENDED_NOTE,
    NO_CHARTS_NOTE,
    NO_FLOW_DATA_NOTE,
    NO_PATHS_NOTE,
    NO_STEPS_NOTE,
    NO_VERSIONS_NOTE,
    NO_WIDGETS_NOTE,
    ActiveTime,
    PathStep,
    ReportData,
    SqlReader,
    Transition,
    build_report,
    dlt_reader,
    duckdb_reader,
    render_html,
    render_text,
    write_report,
)

DATASET = "twilio_studio"
FLOWS = 3
PER_FLOW = 200
WITH_STEPS = ("flows", "engagements", "engagement_steps")


@dataclass
class Studio:
    """One emulator, loaded once into DuckDB (with its steps), and the report built from it."""

    emu: Emulator
    loaded: Loaded
    report: ReportData

    def views(self) -> list[EngagementView]:
        """Every engagement as the emulator shows it now (computed from its dataset, not HTTP)."""
        return listed_views(self.emu)

    @cached_property
    def page(self) -> str:
        """The report as HTML, rendered once (its charts take seconds)."""
        return render_html(self.report)


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    emu = Emulator(Dataset(seed=23, flows=FLOWS, engagements_per_flow=PER_FLOW)).start()
    try:
        loaded = Loaded(tmp_path_factory.mktemp("report"))
        loaded.run(make_source(emu.base_url).with_resources(*WITH_STEPS))
        yield Studio(emu, loaded, build_report(duckdb_reader(loaded.db, DATASET), DATASET))
    finally:
        emu.stop()


def flow_sids() -> list[str]:
    return [f.sid for f in Dataset(seed=23, flows=FLOWS, engagements_per_flow=PER_FLOW).flows]


def percentile_cont(values: list[float], q: float) -> float:
    """SQL's percentile_cont: linear interpolation between the two nearest ranks."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# ------------------------------------------------------------------------------------------ numbers
def test_total_engagements_match_emulator_and_table(studio: Studio) -> None:
    assert studio.report.total_engagements == len(expected_sids(studio.emu)) == FLOWS * PER_FLOW
    assert studio.report.total_engagements == studio.loaded.scalar("SELECT count(*) FROM engagements")


def test_flow_names_come_from_flows_table(studio: Studio) -> None:
    assert studio.report.flow_names == {f.sid: f.friendly_name for f in studio.emu.dataset.flows}


def test_per_day_counts_equal_group_by_and_emulator(studio: Studio) -> None:
    got = {(d.day, d.flow_sid): d.count for d in studio.report.per_day}
    sql = studio.loaded.sql(
        "SELECT CAST(date_trunc('day', date_created AT TIME ZONE 'UTC') AS DATE), flow_sid, count(*) "
        "FROM engagements GROUP BY 1, 2"
    )
    assert got == {(day, flow): n for day, flow, n in sql}
    from_emulator = Counter((v.script.date_created.date(), v.script.flow.sid) for v in studio.views())
    assert got == dict(from_emulator)
    assert len({day for day, _ in got}) >= 7  # the dataset spans a week: more than one day to get wrong


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Asia/Tokyo"])
def test_days_are_utc_whatever_the_session_time_zone(
    studio: Studio, monkeypatch: pytest.MonkeyPatch, zone: str
) -> None:
    monkeypatch.setenv("TZ", zone)  # DuckDB 2 takes its session TimeZone from the process's zone
    time.tzset()
    connect = duckdb.connect

    def connect_in_zone(*args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        con = connect(*args, **kwargs)
        con.execute(f"SET TimeZone = '{zone}'")  # DuckDB 1.x keeps the zone it found at import
        return con

    monkeypatch.setattr(duckdb, "connect", connect_in_zone)
    try:
        assert duckdb_reader(studio.loaded.db, DATASET)("SELECT current_setting('TimeZone')") == [(zone,)]
        report = build_report(duckdb_reader(studio.loaded.db, DATASET), DATASET)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert os.environ.get("TZ") != zone
    assert report.per_day == studio.report.per_day
    from_emulator = Counter((v.script.date_created.date(), v.script.flow.sid) for v in studio.views())
    assert {(d.day, d.flow_sid): d.count for d in report.per_day} == dict(from_emulator)


@pytest.mark.parametrize("flow", [None, *flow_sids()], ids=["all_flows", *(f"flow_{i}" for i in range(FLOWS))])
def test_status_shares_equal_group_by_and_sum_to_total(studio: Studio, flow: str | None) -> None:
    shares = [s for s in studio.report.status if s.flow_sid == flow]
    views = [v for v in studio.views() if flow is None or v.script.flow.sid == flow]
    assert {s.status: s.count for s in shares} == dict(Counter(v.status for v in views))
    where = "" if flow is None else f"WHERE flow_sid = '{flow}'"
    assert {s.status: s.count for s in shares} == dict(
        studio.loaded.sql(f"SELECT status, count(*) FROM engagements {where} GROUP BY status")
    )
    assert sum(s.count for s in shares) == len(views)
    assert sum(s.percent for s in shares) == pytest.approx(100.0)
    for s in shares:
        assert s.percent == pytest.approx(100.0 * s.count / len(views))


def test_status_shares_include_active_and_ended(studio: Studio) -> None:
    assert {s.status for s in studio.report.status if s.flow_sid is None} == {"active", "ended"}


@pytest.mark.parametrize("flow", [None, *flow_sids()], ids=["all_flows", *(f"flow_{i}" for i in range(FLOWS))])
def test_durations_equal_emulator_times(studio: Studio, flow: str | None) -> None:
    (stats,) = [d for d in studio.report.durations if d.flow_sid == flow]
    seconds = [
        (v.date_updated - v.script.date_created).total_seconds()
        for v in studio.views()
        if v.status == "ended" and v.date_updated is not None and flow in (None, v.script.flow.sid)
    ]
    assert stats.count == len(seconds)
    assert stats.median_seconds == pytest.approx(percentile_cont(seconds, 0.5))
    assert stats.p90_seconds == pytest.approx(percentile_cont(seconds, 0.9))
    assert stats.mean_seconds == pytest.approx(sum(seconds) / len(seconds))
    buckets = [b for b in studio.report.duration_buckets if flow in (None, b.flow_sid)]
    assert sum(b.count for b in buckets) == len(seconds)


def test_durations_skip_ended_engagements_without_date_updated(studio: Studio) -> None:
    ended = studio.loaded.scalar("SELECT count(*) FROM engagements WHERE status = 'ended'")
    null_updated = studio.loaded.scalar(
        "SELECT count(*) FROM engagements WHERE status = 'ended' AND date_updated IS NULL"
    )
    assert null_updated > 0, "the dataset must have ended engagements without date_updated"
    (overall,) = [d for d in studio.report.durations if d.flow_sid is None]
    assert overall.count == ended - null_updated


@pytest.mark.parametrize("flow_index", range(FLOWS), ids=[f"flow_{i}" for i in range(FLOWS)])
def test_funnel_follows_the_flow_and_counts_distinct_engagements(studio: Studio, flow_index: int) -> None:
    flow = studio.emu.dataset.flows[flow_index]
    steps = [s for s in studio.report.funnel if s.flow_sid == flow.sid]
    views = [v for v in studio.views() if v.script.flow.sid == flow.sid]
    # every widget of every revision that engagements ran, the flow's first widget first
    assert {s.widget for s in steps} == {name for v in views for name in v.context["widgets"]}
    assert steps[0].widget == flow.widgets[0].name
    reached = dict(
        studio.loaded.sql(
            "SELECT name, count(DISTINCT engagement_sid) FROM engagements__widgets WHERE flow_sid = ? GROUP BY name",
            flow.sid,
        )
    )
    assert {s.widget: s.reached for s in steps} == reached
    assert steps[0].reached == sum(1 for v in views if v.context["widgets"])
    assert studio.report.funnel_entered[flow.sid] == steps[0].reached
    assert steps[-1].reached < steps[0].reached, "callers drop out along the way in the emulator"


@pytest.mark.parametrize("flow_index", range(FLOWS), ids=[f"flow_{i}" for i in range(FLOWS)])
def test_funnel_stops_are_the_last_widget_of_ended_engagements(studio: Studio, flow_index: int) -> None:
    flow = studio.emu.dataset.flows[flow_index]
    steps = {s.widget: s.stopped for s in studio.report.funnel if s.flow_sid == flow.sid}
    ended = [v for v in studio.views() if v.script.flow.sid == flow.sid and v.status == "ended" and v.steps]
    expected = Counter(v.steps[-1].widget.name for v in ended)
    assert {w: n for w, n in steps.items() if n} == dict(expected)
    assert sum(steps.values()) == len(ended)


def test_stop_counts_sum_to_ended_engagements_with_widgets(studio: Studio) -> None:
    ended_with_widgets = studio.loaded.scalar(
        "SELECT count(DISTINCT e.sid) FROM engagements e JOIN engagements__widgets w "
        "ON w.engagement_sid = e.sid WHERE e.status = 'ended'"
    )
    assert sum(s.stopped for s in studio.report.funnel) == ended_with_widgets > 0


def expected_top(loaded: Loaded, top_n: int) -> dict[tuple[str, str], list[tuple[str | None, int]]]:
    """Top values per (flow, key) by a plain GROUP BY, ties broken by value, NULL last."""
    rows = loaded.sql(
        "SELECT flow_sid, key, value, count(*) FROM engagements__flow_data WHERE path = '' "
        "GROUP BY flow_sid, key, value"
    )
    groups: dict[tuple[str, str], list[tuple[str | None, int]]] = {}
    for flow, key, value, n in rows:
        groups.setdefault((flow, key), []).append((value, n))
    return {k: sorted(v, key=lambda vn: (-vn[1], vn[0] is None, vn[0] or ""))[:top_n] for k, v in groups.items()}


@pytest.mark.parametrize("top_n", [1, 3, 10], ids=["top_1", "top_3", "top_10"])
def test_top_values_equal_group_by(studio: Studio, top_n: int) -> None:
    report = build_report(duckdb_reader(studio.loaded.db, DATASET), DATASET, top_n=top_n)
    got: dict[tuple[str, str], list[tuple[str | None, int]]] = {}
    for v in report.top_values:
        got.setdefault((v.flow_sid, v.key), []).append((v.value, v.count))
    assert got == expected_top(studio.loaded, top_n)
    assert max(len(v) for v in got.values()) == top_n  # order ids are unique: some key fills its top


def test_top_values_only_use_scalar_keys(studio: Studio) -> None:
    keys = {v.key for v in studio.report.top_values}
    array_keys = {r[0] for r in studio.loaded.sql("SELECT DISTINCT key FROM engagements__flow_data WHERE path <> ''")}
    assert array_keys, "the dataset must have array-valued flow data for this test to mean anything"
    assert not keys & array_keys
    assert None in {v.value for v in studio.report.top_values}  # customer_name is sometimes null


def test_dlt_reader_gives_the_same_report(studio: Studio) -> None:
    pipeline = studio.loaded.pipeline
    run = dlt_reader(
        pipeline.pipeline_name,
        dlt.destinations.duckdb(studio.loaded.db),
        DATASET,
        pipeline.pipelines_dir,
    )
    assert build_report(run, DATASET) == studio.report


def test_dlt_reader_opens_a_duckdb_file_read_only_and_never_creates_one(studio: Studio, tmp_path: Path) -> None:
    pipeline = studio.loaded.pipeline
    with duckdb.connect(studio.loaded.db, read_only=True):  # a read-write connection would be refused
        read = dlt_reader(pipeline.pipeline_name, dlt.destinations.duckdb(studio.loaded.db), DATASET,
                          pipeline.pipelines_dir)  # fmt: skip
        assert read("SELECT count(*) FROM engagements") == [(FLOWS * PER_FLOW,)]
    missing = tmp_path / "never_loaded.duckdb"
    with pytest.raises(ValueError, match=re.escape(f"no DuckDB file {missing}: load it first")):
        dlt_reader("never_loaded", dlt.destinations.duckdb(str(missing)), DATASET, str(tmp_path / "pipelines"))
    assert not missing.exists()


def test_postgres_gives_the_same_report(studio: Studio, tmp_path: Path) -> None:
    url = postgres_url()
    dataset = f"ts_report_{uuid.uuid4().hex[:10]}"
    destination = dlt.destinations.postgres(credentials=url)
    pipeline = dlt.pipeline(
        pipeline_name=f"pg_{dataset}",
        destination=destination,
        dataset_name=dataset,
        pipelines_dir=str(tmp_path / "pg_pipelines"),
    )
    try:
        pipeline.run(make_source(studio.emu.base_url).with_resources(*WITH_STEPS))
        run = dlt_reader(pipeline.pipeline_name, destination, dataset, str(tmp_path / "pg_pipelines"))
        report = build_report(run, dataset)
    finally:
        with pipeline.sql_client() as client:
            client.execute_sql(f'DROP SCHEMA IF EXISTS "{dataset}" CASCADE')
            client.execute_sql(f'DROP SCHEMA IF EXISTS "{dataset}_staging" CASCADE')
    assert report.dataset == dataset
    assert report.paths and "paths" not in report.notes
    # floats summed or interpolated in another order differ in the last bits; everything else is exact
    assert replace(report, dataset=DATASET, durations=[]) == replace(studio.report, durations=[])
    for got, want in zip(report.durations, studio.report.durations, strict=True):
        assert (got.flow_sid, got.count) == (want.flow_sid, want.count)
        seconds = (want.median_seconds, want.p90_seconds, want.mean_seconds)
        assert (got.median_seconds, got.p90_seconds, got.mean_seconds) == pytest.approx(seconds, rel=1e-9)


def test_report_never_reads_contact_address_or_context(studio: Studio) -> None:
    queries: list[str] = []
    inner = duckdb_reader(studio.loaded.db, DATASET)

    def spy(sql: str) -> list[tuple[Any, ...]]:
        queries.append(sql)
        return inner(sql)

    runner: SqlReader = spy
    build_report(runner, DATASET)
    assert len(queries) >= 5
    for sql in queries:
        assert "contact_channel_address" not in sql
        assert not re.search(r"\bcontext\b", sql), sql


@pytest.mark.parametrize(
    ("runner_dataset", "dataset", "top_n", "message"),
    [
        pytest.param(
            "no_such_dataset", "no_such_dataset", 10,
            "dataset 'no_such_dataset' is not in {db}: pass the dataset_name the pipeline loaded into "
            "(the default is 'twilio_studio'); the file has twilio_studio, twilio_studio_staging",
            id="duckdb_file_without_that_schema",
        ),
        pytest.param(
            DATASET, "no_such_dataset", 10,
            "dataset 'no_such_dataset' has no engagements table: pass the destination and the dataset_name",
            id="dataset_without_engagements",
        ),
        pytest.param(DATASET, DATASET, 0, "top_n must be 1 or more, got 0", id="top_n_zero"),
    ],
)  # fmt: skip
def test_bad_arguments_say_what_to_fix(
    studio: Studio, runner_dataset: str, dataset: str, top_n: int, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message.format(db=studio.loaded.db))):
        build_report(duckdb_reader(studio.loaded.db, runner_dataset), dataset, top_n=top_n)


# ---------------------------------------------------------------------------------------- rendering
def test_html_is_self_contained_with_charts(studio: Studio, tmp_path: Path) -> None:
    path = write_report(studio.report, tmp_path / "report.html")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    charts = page.count('<img alt="')
    assert page.count('<img alt="Widget funnel: ') == FLOWS
    assert page.count('<img alt="Widget paths: ') == FLOWS
    assert charts == 3 + 2 * FLOWS == page.count('src="data:image/png;base64,')
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)
    for flow in studio.emu.dataset.flows:
        assert flow.friendly_name in page


def test_html_without_matplotlib_has_every_table_and_says_how_to_get_charts(
    studio: Studio, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with_charts = studio.page  # rendered (and cached for the other tests) before matplotlib goes away
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError, as when not installed
    with caplog.at_level(logging.WARNING, logger="twilio_studio.report"):
        page = render_html(studio.report)
    assert "<img" not in page
    assert NO_CHARTS_NOTE in html.unescape(page)
    assert "pip install 'twilio-studio-dlt[charts]'" in NO_CHARTS_NOTE
    assert "matplotlib is not installed" in caplog.text
    assert "<img" in with_charts
    tables = re.findall(r"<h2>(.*?)</h2>", with_charts)
    assert tables and re.findall(r"<h2>(.*?)</h2>", page) == tables  # the same sections, in the same order
    assert page.count("<table>") == with_charts.count("<table>")


def test_html_and_text_contain_no_contact_address(studio: Studio) -> None:
    addresses = [r[0] for r in studio.loaded.sql("SELECT DISTINCT contact_channel_address FROM engagements")]
    assert len(addresses) > 100
    page, text = studio.page, render_text(studio.report)
    for address in addresses:
        assert address not in page
        assert address not in text


def test_html_escapes_flow_names(studio: Studio) -> None:
    sid = next(iter(studio.report.flow_names))
    report = build_report(duckdb_reader(studio.loaded.db, DATASET), DATASET)
    report.flow_names[sid] = "<script>alert(1)</script> & co"
    page = render_html(report)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page


def test_text_has_every_flow_and_section(studio: Studio) -> None:
    text = render_text(studio.report)
    for flow in studio.emu.dataset.flows:
        assert flow.friendly_name in text
        assert flow.widgets[0].name in text
    for title in (
        "Engagements per day",
        "Status share",
        "Time from created",
        "Widget funnel",
        "Widget paths",
        "Top 10",
    ):
        assert title in text
    first_day = min(d.day for d in studio.report.per_day)
    assert first_day.isoformat() in text
    assert f"{FLOWS * PER_FLOW} engagements in {FLOWS} flows" in text


def test_text_columns_line_up(studio: Studio) -> None:
    text = render_text(studio.report)
    block = text.split("Status share\n")[1].split("\n\n")[0].splitlines()
    _header, rule, *rows = block[1:]
    assert set(rule.replace(" ", "")) == {"-"}
    ends = [m.end() for m in re.finditer(r"-+", rule)]
    for row in rows:
        # numbers are right-aligned: each row's count ends where its column's rule ends
        assert row[: ends[2]].endswith(tuple("0123456789")), row


# ------------------------------------------------------------------------------------------- paths
def emulator_paths(views: list[EngagementView], flow_sid: str) -> Counter[tuple[str, str]]:
    """(widget that ran, where it went) -> steps of one flow, from the emulator's own steps."""
    return Counter((s.widget.name, s.transitioned_to) for v in views if v.script.flow.sid == flow_sid for s in v.steps)


@pytest.mark.parametrize("flow_index", range(FLOWS), ids=[f"flow_{i}" for i in range(FLOWS)])
def test_paths_equal_group_by_and_emulator(studio: Studio, flow_index: int) -> None:
    flow = studio.emu.dataset.flows[flow_index]
    report = build_report(duckdb_reader(studio.loaded.db, DATASET), DATASET, top_n=1000)  # every transition
    got = {(p.from_widget, p.to_widget): p.count for p in report.paths if p.flow_sid == flow.sid}
    sql = studio.loaded.sql(
        "SELECT transitioned_from, transitioned_to, count(*) FROM engagement_steps WHERE flow_sid = ? GROUP BY 1, 2",
        flow.sid,
    )
    assert got == {(a, b): n for a, b, n in sql}
    expected = emulator_paths(studio.views(), flow.sid)
    assert got == dict(expected)
    assert got[("Trigger", flow.widgets[0].name)] == max(got.values())  # every path starts at the trigger
    steps = studio.loaded.scalar("SELECT count(*) FROM engagement_steps WHERE flow_sid = ?", flow.sid)
    assert steps == sum(expected.values()) > 0
    for p in report.paths:
        if p.flow_sid == flow.sid:
            assert p.percent == pytest.approx(100.0 * p.count / steps)


@pytest.mark.parametrize("top_n", [1, 3], ids=["top_1", "top_3"])
def test_paths_keep_the_most_common_transitions_per_flow(studio: Studio, top_n: int) -> None:
    report = build_report(duckdb_reader(studio.loaded.db, DATASET), DATASET, top_n=top_n)
    views = studio.views()
    for flow in studio.emu.dataset.flows:
        counts = emulator_paths(views, flow.sid)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
        total = sum(counts.values())
        got = [p for p in report.paths if p.flow_sid == flow.sid]
        assert [replace(p, percent=0.0) for p in got] == [PathStep(flow.sid, a, b, n, 0.0) for (a, b), n in ranked]
        assert [p.percent for p in got] == pytest.approx([100.0 * n / total for _, n in ranked])
    assert "paths" not in report.notes


def test_paths_render_as_tables_and_charts(studio: Studio) -> None:
    text = render_text(studio.report)
    section = text.split("Widget paths: the 10 most common transitions per flow (percent of the flow's steps)\n")[1]
    rows = section.split("\n\n")[0].splitlines()[3:]
    assert len(rows) == len(studio.report.paths) > FLOWS
    first = studio.report.paths[0]
    assert re.search(
        rf"\bTrigger\s+{re.escape(str(first.to_widget))}\s+{first.count}\s+{first.percent:.1f} %$", rows[0]
    )
    page = studio.page
    for flow in studio.emu.dataset.flows:
        assert f'<img alt="Widget paths: {html.escape(flow.friendly_name)}"' in page
    assert NO_STEPS_NOTE not in text and html.escape(NO_STEPS_NOTE) not in page


# ---------------------------------------------------------------------------------- without widgets
def test_context_mode_never_still_reports(emulator_never: tuple[Emulator, Loaded]) -> None:
    emu, loaded = emulator_never
    tables = {r[0] for r in loaded.sql("SELECT table_name FROM information_schema.tables")}
    assert "engagements" in tables
    assert "engagements__widgets" not in tables and "engagements__flow_data" not in tables
    report = build_report(duckdb_reader(loaded.db, DATASET), DATASET)
    assert report.total_engagements == len(expected_sids(emu))
    assert report.funnel == [] and report.top_values == []
    assert report.notes["funnel"] == NO_WIDGETS_NOTE
    assert report.notes["top_values"] == NO_FLOW_DATA_NOTE
    text = render_text(report)
    assert NO_WIDGETS_NOTE in text
    for flow in emu.dataset.flows:
        assert flow.friendly_name in text
    page = render_html(report)
    assert "context_mode=&#x27;never&#x27;" in page
    assert page.count('src="data:image/png;base64,') == 3  # per day, status, durations; no funnels, no graphs
    assert report.graphs == [] and report.notes["graphs"] == NO_PATHS_NOTE and NO_PATHS_NOTE in text


@pytest.fixture
def emulator_never(tmp_path: Path) -> Iterator[tuple[Emulator, Loaded]]:
    emu = Emulator(Dataset(seed=3, flows=2, engagements_per_flow=40)).start()
    try:
        loaded = Loaded(tmp_path)
        loaded.run(make_source(emu.base_url, context_mode="never"))
        yield emu, loaded
    finally:
        emu.stop()


def test_days_are_dates(studio: Studio) -> None:
    assert all(type(d.day) is date for d in studio.report.per_day)


# -------------------------------------------------------------------------------- status transitions
VERSION_COLUMN = {"scd2": "valid_from", "append": "snapshot_at"}


@dataclass
class History:
    """Two loads of one emulator in a write mode that keeps versions, six emulated days apart.

    ``merge_report`` is the report on a merge-mode load of the same emulator state (after the second load).
    """

    mode: str
    emu: Emulator
    loaded: Loaded
    first_status: dict[str, str]  # sid -> status as the emulator showed it at the first load
    last_status: dict[str, str]  # sid -> status as the emulator shows it at the second load
    report: ReportData
    merge_report: ReportData

    @property
    def column(self) -> str:
        """The report's column that says which version a row is in this mode."""
        return VERSION_COLUMN[self.mode]

    def flow_of(self) -> dict[str, str]:
        """Each engagement's flow SID, as the emulator shows them now."""
        return {v.script.sid: v.script.flow.sid for v in listed_views(self.emu)}

    def went_active_to_ended(self) -> set[str]:
        """SIDs active at the first load that the emulator shows ended now (as tests/source/test_history.py)."""
        return {s for s, st in self.first_status.items() if st == "active" and self.last_status.get(s) == "ended"}


def load_twice(emu: Emulator, loaded: Loaded, mode: str, **options: Any) -> tuple[dict[str, str], dict[str, str]]:
    """Loads, lets six days pass (active engagements end), loads again; the emulator's statuses at each load."""
    loaded.run(make_source(emu.base_url, write_mode=mode, **options))
    first = {v.script.sid: v.status for v in listed_views(emu)}
    emu.advance(days=6)
    loaded.run(make_source(emu.base_url, write_mode=mode, **options))
    return first, {v.script.sid: v.status for v in listed_views(emu)}


@pytest.fixture(scope="module", params=["scd2", "append"])
def history(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    mode = str(request.param)
    emu = Emulator(Dataset(seed=11, flows=2, engagements_per_flow=150)).start()
    try:
        loaded = Loaded(tmp_path_factory.mktemp(f"history_{mode}"))
        first, last = load_twice(emu, loaded, mode)
        report = build_report(duckdb_reader(loaded.db, DATASET), DATASET)
        merged = Loaded(tmp_path_factory.mktemp(f"history_{mode}_as_merge"))
        merged.run(make_source(emu.base_url))
        merge_report = build_report(duckdb_reader(merged.db, DATASET), DATASET)
        yield History(mode, emu, loaded, first, last, report, merge_report)
    finally:
        emu.stop()


def previous_versions_sql(column: str, table: str = "engagements") -> str:
    """Each version with the status of the sid's previous version, by a self-join (no window function)."""
    return (
        f"SELECT e.{column}, e.flow_sid, p.status, e.status, e.sid FROM {table} e "
        f"LEFT JOIN {table} p ON p.sid = e.sid AND p.{column} = "
        f"(SELECT max(q.{column}) FROM {table} q WHERE q.sid = e.sid AND q.{column} < e.{column})"
    )


def transition_counts(rows: list[tuple[Any, ...]]) -> Counter[tuple[date, str, str, str]]:
    """(UTC day of the version time, flow, from, to) -> versions, the UTC day computed in Python."""
    return Counter(
        (at.astimezone(timezone.utc).date(), flow, prev or "new", status) for at, flow, prev, status, _ in rows
    )


def as_counts(transitions: list[Transition]) -> dict[tuple[date, str, str, str], int]:
    return {(t.day, t.flow_sid, t.from_status, t.to_status): t.count for t in transitions}


@pytest.mark.slow
def test_transitions_equal_a_self_join_on_the_table(history: History) -> None:
    assert history.report.version_column == history.column
    rows = history.loaded.sql(previous_versions_sql(history.column))
    assert len(rows) == history.loaded.scalar("SELECT count(*) FROM engagements")  # no version time is shared
    expected = transition_counts(rows)
    assert as_counts(history.report.transitions) == dict(expected)
    kinds = {(a, b) for _, _, a, b in expected}
    assert {("new", "active"), ("new", "ended"), ("active", "ended")} <= kinds
    assert len(history.report.transitions) == len(expected)  # one row per day, flow and transition


def test_active_to_ended_transitions_equal_the_emulator(history: History) -> None:
    ended = history.went_active_to_ended()
    assert ended, "some active engagements must have ended for this test to mean anything"
    flow_of = history.flow_of()
    got: Counter[Any] = Counter()
    for t in history.report.transitions:
        if (t.from_status, t.to_status) == ("active", "ended"):
            got[t.flow_sid] += t.count
    assert got == Counter(flow_of[s] for s in ended)
    # an engagement that ended stays ended: no version leaves 'ended'
    assert not [t for t in history.report.transitions if t.from_status == "ended"]


def test_first_versions_equal_the_emulator_at_each_load(history: History) -> None:
    flow_of = history.flow_of()
    first_seen = dict(history.first_status)  # a sid's first version: its status when first loaded
    for sid, status in history.last_status.items():
        first_seen.setdefault(sid, status)
    assert len(first_seen) > len(history.first_status), "the second load must bring new engagements"
    got: Counter[Any] = Counter()
    for t in history.report.transitions:
        if t.from_status == "new":
            got[(t.flow_sid, t.to_status)] += t.count
    assert got == Counter((flow_of[s], st) for s, st in first_seen.items())
    assert sum(got.values()) == history.loaded.scalar("SELECT count(DISTINCT sid) FROM engagements")


def test_active_times_equal_the_emulator(history: History) -> None:
    by_sid = {v.script.sid: v for v in listed_views(history.emu)}
    second_load = history.loaded.scalar(f"SELECT max({history.column}) FROM engagements")
    day = second_load.astimezone(timezone.utc).date()  # every active -> ended version is from the second load
    hours: dict[str, list[float]] = {}
    for sid in history.went_active_to_ended():
        view = by_sid[sid]
        if view.date_updated is not None:
            seconds = (view.date_updated - view.script.date_created).total_seconds()
            hours.setdefault(view.script.flow.sid, []).append(seconds / 3600)
    assert hours, "some engagements that ended must have a date_updated"
    got = {(a.day, a.flow_sid): (a.count, a.median_hours) for a in history.report.active_times}
    assert got.keys() == {(day, flow) for flow in hours}
    for flow, values in hours.items():
        count, median = got[(day, flow)]
        assert count == len(values)
        assert median == pytest.approx(percentile_cont(values, 0.5))
    assert "active_times" not in history.report.notes and "transitions" not in history.report.notes


def test_versioned_report_renders_transitions(history: History) -> None:
    text = render_text(history.report)
    section = text.split(f"Status transitions per day (UTC, by version time: {history.column})\n")[1]
    rows = section.split("\n\n")[0].splitlines()[3:]
    assert len(rows) == len(history.report.transitions)
    ended = history.went_active_to_ended()
    assert any(re.search(rf"\bactive\s+ended\s+{len(ended)}$", r) for r in rows), rows
    assert "Time active before ending" in text
    page = render_html(history.report)
    assert page.count('<img alt="Status transitions per day (UTC, all flows)"') == 1
    funnels = page.count('<img alt="Widget funnel: ')
    assert page.count('src="data:image/png;base64,') == 3 + funnels + 1 + len(history.report.graphs)
    assert NO_VERSIONS_NOTE not in text and html.escape(NO_VERSIONS_NOTE) not in page
    # loaded without engagement_steps: the path view says how to load them
    assert history.report.paths == [] and history.report.notes["paths"] == NO_STEPS_NOTE
    assert "--resources flows,flow_revisions,engagements,engagement_steps" in NO_STEPS_NOTE
    assert f"{NO_STEPS_NOTE}\n" in text and html.escape(NO_STEPS_NOTE) in page
    assert '<img alt="Widget paths: ' not in page


def test_merge_dataset_gives_the_versions_note(studio: Studio) -> None:
    report = studio.report
    assert report.version_column is None
    assert report.transitions == [] and report.active_times == []
    assert report.notes["transitions"] == NO_VERSIONS_NOTE
    assert "active_times" not in report.notes
    assert "write_mode scd2" in NO_VERSIONS_NOTE and "append" in NO_VERSIONS_NOTE
    text = render_text(report)
    assert f"Status transitions per day (UTC, by version time)\n{'=' * 49}\n{NO_VERSIONS_NOTE}\n" in text
    assert "Time active before ending" not in text
    page = render_html(report)
    assert html.escape(NO_VERSIONS_NOTE) in page
    assert "Status transitions per day (UTC, all flows)" not in page


# ------------------------------------------------------------------- current versions of versioned data
def status_counts(views: list[EngagementView]) -> dict[tuple[str | None, str], int]:
    """(flow or None for all flows, status) -> engagements, as the emulator shows them now."""
    counts: Counter[tuple[str | None, str]] = Counter()
    for v in views:
        counts[(v.script.flow.sid, v.status)] += 1
        counts[(None, v.status)] += 1
    return dict(counts)


def emulator_funnel(views: list[EngagementView]) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """(flow, widget) -> engagements that reached it, and ended engagements whose last widget it is."""
    reached = Counter((v.script.flow.sid, w) for v in views for w in v.context["widgets"])  # the trigger is none
    stopped = Counter(
        (v.script.flow.sid, list(v.context["widgets"])[-1])
        for v in views
        if v.status == "ended" and v.context["widgets"]
    )
    return dict(reached), dict(stopped)


def funnel_counts(report: ReportData) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    reached = {(f.flow_sid, f.widget): f.reached for f in report.funnel}
    return reached, {(f.flow_sid, f.widget): f.stopped for f in report.funnel if f.stopped}


def test_versioned_sections_count_each_engagement_once(history: History) -> None:
    rows, sids = history.loaded.sql("SELECT count(*), count(DISTINCT sid) FROM engagements")[0]
    assert rows > sids, "the dataset must hold several versions of some engagements"
    views = listed_views(history.emu)
    report = history.report
    assert report.total_engagements == sids == len(views)
    assert {(s.flow_sid, s.status): s.count for s in report.status} == status_counts(views)
    days = Counter((v.script.date_created.date(), v.script.flow.sid) for v in views)
    assert {(d.day, d.flow_sid): d.count for d in report.per_day} == dict(days)
    ended = [v for v in views if v.status == "ended" and v.date_updated is not None]
    (overall,) = [d for d in report.durations if d.flow_sid is None]
    assert overall.count == len(ended) == sum(b.count for b in report.duration_buckets)


def test_versioned_funnel_uses_the_current_versions_widgets(history: History) -> None:
    views = listed_views(history.emu)
    assert funnel_counts(history.report) == emulator_funnel(views)
    assert history.report.funnel_entered == dict(Counter(v.script.flow.sid for v in views if v.steps))


def test_versioned_report_equals_a_merge_load_of_the_same_state(history: History) -> None:
    got, merged = history.report, history.merge_report
    assert merged.version_column is None and got.version_column == history.column
    same = ("flow_names", "total_engagements", "per_day", "status", "duration_buckets", "funnel", "funnel_entered")
    for name in (*same, "top_values"):
        assert getattr(got, name) == getattr(merged, name), name
    assert got.top_values, "top values from the current versions' flow data"
    for a, b in zip(got.durations, merged.durations, strict=True):
        assert (a.flow_sid, a.count) == (b.flow_sid, b.count)
        assert (a.median_seconds, a.p90_seconds, a.mean_seconds) == pytest.approx(
            (b.median_seconds, b.p90_seconds, b.mean_seconds), rel=1e-9
        )


# A hand-made versioned table with versions around UTC midnight: (sid, flow, status, created, updated, version time)
F1, F2 = "FW" + "1" * 32, "FW" + "2" * 32
VERSIONS = [
    ("FN1", F1, "active", "2024-03-01 20:00:00", "2024-03-01 23:00:00", "2024-03-01 23:30:00"),
    ("FN1", F1, "ended", "2024-03-01 20:00:00", "2024-03-02 00:10:00", "2024-03-02 00:30:00"),  # 4 h 10 min
    ("FN2", F1, "active", "2024-03-01 21:00:00", "2024-03-01 21:30:00", "2024-03-01 22:00:00"),
    ("FN2", F1, "ended", "2024-03-01 21:00:00", "2024-03-02 23:00:00", "2024-03-02 23:59:59"),  # 26 h
    ("FN3", F1, "ended", "2024-03-01 23:00:00", "2024-03-01 23:10:00", "2024-03-01 23:59:00"),  # never active
    ("FN4", F1, "active", "2024-03-01 09:00:00", "2024-03-01 09:30:00", "2024-03-01 10:00:00"),
    ("FN4", F1, "active", "2024-03-01 09:00:00", "2024-03-02 00:30:00", "2024-03-02 01:00:00"),
    ("FN4", F1, "ended", "2024-03-01 09:00:00", None, "2024-03-03 00:00:00"),  # no date_updated: no time
    ("FN5", F2, "active", "2024-03-01 11:00:00", "2024-03-01 11:30:00", "2024-03-01 12:00:00"),
    ("FN5", F2, "ended", "2024-03-01 11:00:00", "2024-03-02 23:00:00", "2024-03-03 00:00:00"),  # 36 h
    ("FN5", F2, "ended", "2024-03-01 11:00:00", "2024-03-04 12:00:00", "2024-03-04 12:00:00"),  # later: not first
    ("FN6", F2, None, "2024-03-02 05:00:00", None, "2024-03-02 06:00:00"),
    ("FN7", F2, "active", "2024-03-01 12:00:00", "2024-03-01 12:30:00", "2024-03-01 13:00:00"),
    ("FN7", F2, "ended", "2024-03-01 12:00:00", "2024-03-02 12:00:00", "2024-03-02 13:00:00"),  # 24 h: the first
    ("FN7", F2, "active", "2024-03-01 12:00:00", "2024-03-03 09:00:00", "2024-03-03 10:00:00"),  # reopened
    ("FN7", F2, "ended", "2024-03-01 12:00:00", "2024-03-04 09:00:00", "2024-03-04 10:00:00"),
]
D1, D2, D3, D4 = (date(2024, 3, d) for d in (1, 2, 3, 4))
EXPECTED_TRANSITIONS = [
    Transition(D1, F1, "new", "active", 3),
    Transition(D1, F1, "new", "ended", 1),
    Transition(D1, F2, "new", "active", 2),
    Transition(D2, F1, "active", "active", 1),
    Transition(D2, F1, "active", "ended", 2),
    Transition(D2, F2, "active", "ended", 1),
    Transition(D2, F2, "new", "unknown", 1),
    Transition(D3, F1, "active", "ended", 1),
    Transition(D3, F2, "active", "ended", 1),
    Transition(D3, F2, "ended", "active", 1),
    Transition(D4, F2, "active", "ended", 1),
    Transition(D4, F2, "ended", "ended", 1),
]
EXPECTED_ACTIVE_TIMES = [
    ActiveTime(D2, F1, 2, (4 + 1 / 6 + 26) / 2),
    ActiveTime(D2, F2, 1, 24.0),
    ActiveTime(D3, F2, 1, 36.0),
]
# the latest version of each sid: FN1..FN5 and FN7 ended, FN6 without a status
EXPECTED_CURRENT_STATUS = [
    (None, "ended", 6),
    (None, "unknown", 1),
    (F1, "ended", 4),
    (F2, "ended", 2),
    (F2, "unknown", 1),
]
ZONES = ["UTC", "Asia/Tokyo", "America/Los_Angeles"]


def versions_sql(schema: str, column: str | None) -> list[str]:
    """Portable DDL and inserts for the hand-made table; ``column`` None makes a merge-like table."""
    ts = "TIMESTAMP WITH TIME ZONE"

    def lit(value: str | None) -> str:
        return "NULL" if value is None else f"{ts} '{value}+00'"

    extra = f", {column} {ts}" if column else ""
    statements = [
        f"CREATE SCHEMA {schema}",
        f"CREATE TABLE {schema}.engagements (sid VARCHAR, flow_sid VARCHAR, status VARCHAR, "
        f"date_created {ts}, date_updated {ts}{extra})",
    ]
    for sid, flow, status, created, updated, at in VERSIONS:
        values = f"'{sid}', '{flow}', {'NULL' if status is None else repr(status)}, {lit(created)}, {lit(updated)}"
        statements.append(f"INSERT INTO {schema}.engagements VALUES ({values}{', ' + lit(at) if column else ''})")
    return statements


def duckdb_zone_reader(path: str, zone: str) -> SqlReader:
    def run(sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(path, read_only=True) as con:
            con.execute(f"SET TimeZone = '{zone}'")
            assert con.execute("SELECT current_setting('TimeZone')").fetchall() == [(zone,)]
            return [tuple(r) for r in con.execute(sql).fetchall()]

    return run


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("column", ["valid_from", "snapshot_at"])
def test_hand_made_versions_give_exact_transitions_by_utc_day(tmp_path: Path, column: str, zone: str) -> None:
    db = str(tmp_path / "versions.duckdb")
    with duckdb.connect(db) as con:
        for sql in versions_sql(DATASET, column):
            con.execute(sql)
    report = build_report(duckdb_zone_reader(db, zone), DATASET)
    assert report.version_column == column
    assert report.transitions == EXPECTED_TRANSITIONS
    assert [(s.flow_sid, s.status, s.count) for s in report.status] == EXPECTED_CURRENT_STATUS
    assert [replace(a, median_hours=0.0) for a in report.active_times] == [
        replace(a, median_hours=0.0) for a in EXPECTED_ACTIVE_TIMES
    ]
    for got, want in zip(report.active_times, EXPECTED_ACTIVE_TIMES, strict=True):
        assert got.median_hours == pytest.approx(want.median_hours)
    assert sum(t.count for t in report.transitions) == len(VERSIONS)


def test_hand_made_table_without_version_column_gives_the_note(tmp_path: Path) -> None:
    db = str(tmp_path / "latest.duckdb")
    with duckdb.connect(db) as con:
        for sql in versions_sql(DATASET, None):
            con.execute(sql)
    report = build_report(duckdb_reader(db, DATASET), DATASET)
    assert report.version_column is None and report.transitions == []
    assert report.notes["transitions"] == NO_VERSIONS_NOTE


def test_versions_without_active_to_ended_give_their_note(tmp_path: Path) -> None:
    db = str(tmp_path / "no_end.duckdb")
    with duckdb.connect(db) as con:
        for sql in versions_sql(DATASET, "valid_from"):
            con.execute(sql)
        con.execute(f"DELETE FROM {DATASET}.engagements WHERE status = 'ended'")
    report = build_report(duckdb_reader(db, DATASET), DATASET)
    assert report.active_times == []
    assert report.notes["active_times"] == NO_ACTIVE_TO_ENDED_NOTE
    assert {(t.from_status, t.to_status) for t in report.transitions} == {
        ("new", "active"),
        ("active", "active"),
        ("new", "unknown"),
    }
    assert NO_ACTIVE_TO_ENDED_NOTE in render_text(report)


@pytest.mark.parametrize("zone", ZONES)
def test_postgres_hand_made_versions_give_the_same_transitions(zone: str) -> None:
    import psycopg2  # type: ignore[import-untyped]

    url, schema = postgres_url(), f"ts_versions_{uuid.uuid4().hex[:10]}"

    def run(sql: str) -> list[tuple[Any, ...]]:
        with psycopg2.connect(url) as con, con.cursor() as cur:
            cur.execute(f"SET TIME ZONE '{zone}'")
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []

    try:
        for sql in versions_sql(schema, "valid_from"):
            run(sql)
        report = build_report(run, schema)
    finally:
        run(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    assert report.transitions == EXPECTED_TRANSITIONS
    assert [(a.day, a.flow_sid, a.count) for a in report.active_times] == [
        (a.day, a.flow_sid, a.count) for a in EXPECTED_ACTIVE_TIMES
    ]
    for got, want in zip(report.active_times, EXPECTED_ACTIVE_TIMES, strict=True):
        assert got.median_hours == pytest.approx(want.median_hours)
    assert [(s.flow_sid, s.status, s.count) for s in report.status] == EXPECTED_CURRENT_STATUS


@pytest.mark.parametrize("mode", ["scd2", "append"])
def test_postgres_versioned_load_gives_the_emulators_transitions(mode: str, tmp_path: Path) -> None:
    url = postgres_url()
    dataset = f"ts_history_{uuid.uuid4().hex[:10]}"
    destination = dlt.destinations.postgres(credentials=url)
    pipelines_dir = str(tmp_path / "pg_pipelines")
    pipeline = dlt.pipeline(
        pipeline_name=f"pg_{dataset}", destination=destination, dataset_name=dataset, pipelines_dir=pipelines_dir
    )
    emu = Emulator(Dataset(seed=11, flows=2, engagements_per_flow=150)).start()
    try:
        pipeline.run(make_source(emu.base_url, write_mode=mode))
        first = {v.script.sid: v.status for v in listed_views(emu)}
        emu.advance(days=6)
        pipeline.run(make_source(emu.base_url, write_mode=mode))
        views = listed_views(emu)
        last = {v.script.sid: v.status for v in views}
        flow_of = {v.script.sid: v.script.flow.sid for v in views}
        dated = {v.script.sid for v in views if v.date_updated is not None}
        run = dlt_reader(pipeline.pipeline_name, destination, dataset, pipelines_dir)
        report = build_report(run, dataset)
        column = VERSION_COLUMN[mode]
        rows = run(previous_versions_sql(column, f'"{dataset}".engagements'))
    finally:
        emu.stop()
        with pipeline.sql_client() as client:
            client.execute_sql(f'DROP SCHEMA IF EXISTS "{dataset}" CASCADE')
            client.execute_sql(f'DROP SCHEMA IF EXISTS "{dataset}_staging" CASCADE')
    assert report.version_column == column
    assert as_counts(report.transitions) == dict(transition_counts(rows))
    ended = {s for s, st in first.items() if st == "active" and last.get(s) == "ended"}
    assert ended
    got: Counter[Any] = Counter()
    for t in report.transitions:
        if (t.from_status, t.to_status) == ("active", "ended"):
            got[t.flow_sid] += t.count
    assert got == Counter(flow_of[s] for s in ended)
    assert sum(a.count for a in report.active_times) == len(ended & dated) > 0
    # every other section counts the current version of each engagement, with that version's widgets
    assert report.total_engagements == len(views) < len(rows)
    assert {(s.flow_sid, s.status): s.count for s in report.status} == status_counts(views)
    assert funnel_counts(report) == emulator_funnel(views)
    assert report.top_values
