"""The report's numbers against direct SQL on the same DuckDB and against the emulator's own dataset."""

from __future__ import annotations

import math
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import dlt
import pytest

from tests.source.conftest import Loaded, expected_sids, make_source
from twilio_studio.emulator import Dataset, Emulator
from twilio_studio.emulator.dataset import EngagementView
from twilio_studio.report import (
    NO_FLOW_DATA_NOTE,
    NO_WIDGETS_NOTE,
    ReportData,
    Runner,
    build_report,
    dlt_runner,
    duckdb_runner,
    render_html,
    render_text,
    write_report,
)

DATASET = "twilio_studio"
POSTGRES_URL = os.environ.get("TWILIO_STUDIO_TEST_POSTGRES")  # as in tests/postgres
FLOWS = 3
PER_FLOW = 200


@dataclass
class Studio:
    """One emulator, loaded once into DuckDB, and the report built from it."""

    emu: Emulator
    loaded: Loaded
    report: ReportData

    def views(self) -> list[EngagementView]:
        """Every engagement as the emulator shows it now (computed from its dataset, not HTTP)."""
        d, now = self.emu.dataset, self.emu.now()
        out = []
        for flow in d.flows:
            lo, hi = d.index_range(flow, now)
            out += [d.view(d.script(flow, i), now) for i in range(lo, hi)]
        return out


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    emu = Emulator(Dataset(seed=23, flows=FLOWS, engagements_per_flow=PER_FLOW)).start()
    try:
        loaded = Loaded(tmp_path_factory.mktemp("report"))
        loaded.run(make_source(emu.base_url))
        yield Studio(emu, loaded, build_report(duckdb_runner(loaded.db, DATASET), DATASET))
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
    monkeypatch.setenv("TZ", zone)  # DuckDB takes its session TimeZone from the process's zone
    time.tzset()
    try:
        assert duckdb_runner(studio.loaded.db, DATASET)("SELECT current_setting('TimeZone')") == [(zone,)]
        report = build_report(duckdb_runner(studio.loaded.db, DATASET), DATASET)
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
    assert [s.widget for s in steps] == [w.name for w in flow.widgets]  # every path is a prefix
    reached = dict(
        studio.loaded.sql(
            "SELECT name, count(DISTINCT engagement_sid) FROM engagements__widgets WHERE flow_sid = ? GROUP BY name",
            flow.sid,
        )
    )
    assert {s.widget: s.reached for s in steps} == reached
    views = [v for v in studio.views() if v.script.flow.sid == flow.sid]
    assert steps[0].reached == sum(1 for v in views if v.steps)
    assert studio.report.funnel_entered[flow.sid] == steps[0].reached
    assert [s.reached for s in steps] == sorted((s.reached for s in steps), reverse=True)
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
    report = build_report(duckdb_runner(studio.loaded.db, DATASET), DATASET, top_n=top_n)
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


def test_dlt_runner_gives_the_same_report(studio: Studio) -> None:
    pipeline = studio.loaded.pipeline
    run = dlt_runner(
        pipeline.pipeline_name,
        dlt.destinations.duckdb(studio.loaded.db),
        DATASET,
        pipeline.pipelines_dir,
    )
    assert build_report(run, DATASET) == studio.report


def test_postgres_gives_the_same_report(studio: Studio, tmp_path: Path) -> None:
    if not POSTGRES_URL:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but TWILIO_STUDIO_TEST_POSTGRES is not set: .ci/run must start PostgreSQL")
        pytest.skip("set TWILIO_STUDIO_TEST_POSTGRES to run the PostgreSQL tests")
    dataset = f"ts_report_{uuid.uuid4().hex[:10]}"
    destination = dlt.destinations.postgres(credentials=POSTGRES_URL)
    pipeline = dlt.pipeline(
        pipeline_name=f"pg_{dataset}",
        destination=destination,
        dataset_name=dataset,
        pipelines_dir=str(tmp_path / "pg_pipelines"),
    )
    try:
        pipeline.run(make_source(studio.emu.base_url))
        run = dlt_runner(pipeline.pipeline_name, destination, dataset, str(tmp_path / "pg_pipelines"))
        report = build_report(run, dataset)
    finally:
        with pipeline.sql_client() as client:
            client.execute_sql(f'DROP SCHEMA IF EXISTS "{dataset}" CASCADE')
            client.execute_sql(f'DROP SCHEMA IF EXISTS "{dataset}_staging" CASCADE')
    assert report.dataset == dataset
    # floats summed or interpolated in another order differ in the last bits; everything else is exact
    assert replace(report, dataset=DATASET, durations=[]) == replace(studio.report, durations=[])
    for got, want in zip(report.durations, studio.report.durations, strict=True):
        assert (got.flow_sid, got.count) == (want.flow_sid, want.count)
        seconds = (want.median_seconds, want.p90_seconds, want.mean_seconds)
        assert (got.median_seconds, got.p90_seconds, got.mean_seconds) == pytest.approx(seconds, rel=1e-9)


def test_report_never_reads_contact_address_or_context(studio: Studio) -> None:
    queries: list[str] = []
    inner = duckdb_runner(studio.loaded.db, DATASET)

    def spy(sql: str) -> list[tuple[Any, ...]]:
        queries.append(sql)
        return inner(sql)

    runner: Runner = spy
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
        build_report(duckdb_runner(studio.loaded.db, runner_dataset), dataset, top_n=top_n)


# ---------------------------------------------------------------------------------------- rendering
def test_html_is_self_contained_with_charts(studio: Studio, tmp_path: Path) -> None:
    path = write_report(studio.report, tmp_path / "report.html")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    charts = page.count('<img alt="')
    assert page.count('<img alt="Widget funnel: ') == FLOWS
    assert charts == 3 + FLOWS == page.count('src="data:image/png;base64,')
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)
    for flow in studio.emu.dataset.flows:
        assert flow.friendly_name in page


def test_html_and_text_contain_no_contact_address(studio: Studio) -> None:
    addresses = [r[0] for r in studio.loaded.sql("SELECT DISTINCT contact_channel_address FROM engagements")]
    assert len(addresses) > 100
    page, text = render_html(studio.report), render_text(studio.report)
    for address in addresses:
        assert address not in page
        assert address not in text


def test_html_escapes_flow_names(studio: Studio) -> None:
    sid = next(iter(studio.report.flow_names))
    report = build_report(duckdb_runner(studio.loaded.db, DATASET), DATASET)
    report.flow_names[sid] = "<script>alert(1)</script> & co"
    page = render_html(report)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page


def test_text_has_every_flow_and_section(studio: Studio) -> None:
    text = render_text(studio.report)
    for flow in studio.emu.dataset.flows:
        assert flow.friendly_name in text
        assert flow.widgets[0].name in text
    for title in ("Engagements per day", "Status share", "Time from created", "Widget funnel", "Top 10"):
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


# ---------------------------------------------------------------------------------- without widgets
def test_context_mode_never_still_reports(emulator_never: tuple[Emulator, Loaded]) -> None:
    emu, loaded = emulator_never
    tables = {r[0] for r in loaded.sql("SELECT table_name FROM information_schema.tables")}
    assert "engagements" in tables
    assert "engagements__widgets" not in tables and "engagements__flow_data" not in tables
    report = build_report(duckdb_runner(loaded.db, DATASET), DATASET)
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
    assert page.count('src="data:image/png;base64,') == 3  # per day, status, durations; no funnels


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
