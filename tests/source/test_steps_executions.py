"""Steps, v2 Executions and their steps, as selectable resources of the same source."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.kit.duck import Loaded, duckdb_pipeline
from tests.kit.studio import DEFAULT_ENGAGEMENTS, EmulatorFactory, expected_sids, listed_views, make_source
from twilio_studio.emulator import Emulator, Faults
from twilio_studio.emulator.dataset import TRIGGER_OF, EngagementView
from twilio_studio.emulator.definitions import TRIGGER_EVENTS

ALL = ("flows", "engagements", "engagement_steps", "executions", "execution_steps")


def source(emu: Emulator, *resources: str, **options: Any) -> Any:
    return make_source(emu.base_url, **options).with_resources(*(resources or ALL))


def views(emu: Emulator) -> dict[str, EngagementView]:
    return {view.script.sid: view for view in listed_views(emu)}


def step_requests(emu: Emulator, since: int = 0) -> list[str]:
    return [p for p in emu.stats.paths[since:] if p.endswith("/Steps")]


def test_engagement_steps_load_every_step_as_the_spec_reads_it(emulator: Emulator, loaded: Loaded) -> None:
    loaded.run(source(emulator, "engagements", "engagement_steps"))
    want = views(emulator)
    rows = loaded.sql(
        "SELECT engagement_sid, sid, name, type, transitioned_from, transitioned_to, widget, event, step_index, "
        "dwell_seconds, is_terminal FROM engagement_steps"
    )
    assert sorted(r[1] for r in rows) == sorted(s.sid for v in want.values() for s in v.steps)
    by_sid = {r[1]: r for r in rows}
    for view in want.values():
        for n, step in enumerate(view.steps):
            nxt = view.steps[n + 1].at if n + 1 < len(view.steps) else None
            assert by_sid[step.sid] == (
                view.script.sid, step.sid, step.event, step.widget.type, step.widget.name, step.transitioned_to,
                step.widget.name, step.event, n, (nxt - step.at).total_seconds() if nxt else None,
                step.transitioned_to == "Ended",
            )  # fmt: skip
    # the spec's example: a first step ran the trigger, named by its event
    first = set(loaded.sql("SELECT DISTINCT flow_sid, widget, type, event FROM engagement_steps WHERE step_index = 0"))
    assert first == {
        (f.sid, "Trigger", "trigger", TRIGGER_EVENTS[TRIGGER_OF[f.template]]) for f in emulator.dataset.flows
    }
    ended = [v for v in want.values() if v.status == "ended"]
    terminal = dict(loaded.sql("SELECT engagement_sid, widget FROM engagement_steps WHERE is_terminal"))
    assert terminal == {v.script.sid: v.steps[-1].widget.name for v in ended if v.steps[-1].transitioned_to == "Ended"}
    # the flow's graph as travelled is one query: widget -> event -> next
    flow = emulator.dataset.flows[0]
    graph = loaded.sql(
        "SELECT widget, event, transitioned_to, count(*) FROM engagement_steps WHERE flow_sid = ? GROUP BY 1, 2, 3",
        flow.sid,
    )
    expected = Counter(
        (s.widget.name, s.event, s.transitioned_to) for v in want.values() if v.script.flow is flow for s in v.steps
    )
    assert {(a, e, b): n for a, e, b, n in graph} == dict(expected)
    # the step context is normalized like the engagement context: one widget per step (the trigger has none)
    widget_rows = loaded.scalar("SELECT count(*) FROM engagement_steps__widgets")
    assert widget_rows == sum(1 for v in want.values() for s in v.steps if s.widget.type != "trigger")
    mismatched = loaded.scalar(
        "SELECT count(*) FROM engagement_steps__widgets w "
        "JOIN engagement_steps s ON s.sid = w.step_sid WHERE w.name <> s.widget"
    )
    assert mismatched == 0


@pytest.mark.slow
def test_steps_are_fetched_only_for_new_or_changed_parents(emulator_factory: EmulatorFactory, loaded: Loaded) -> None:
    emu = emulator_factory()
    loaded.run(source(emu, "engagements", "engagement_steps"))
    assert len(step_requests(emu)) == DEFAULT_ENGAGEMENTS  # one per engagement
    mark = len(emu.stats.paths)
    written = loaded.run(source(emu, "engagements", "engagement_steps"))
    assert step_requests(emu, mark) == [] and "engagement_steps" not in written
    emu.advance(days=2)
    mark = len(emu.stats.paths)
    written = loaded.run(source(emu, "engagements", "engagement_steps"))
    assert len(step_requests(emu, mark)) == written["engagements"] > 0
    want = views(emu)
    assert loaded.scalar("SELECT count(*) FROM engagement_steps") == sum(len(v.steps) for v in want.values())


@pytest.mark.slow
def test_executions_carry_v2_fields_and_use_date_created_from(
    emulator_factory: EmulatorFactory, loaded: Loaded
) -> None:
    emu = emulator_factory()
    loaded.run(source(emu, "executions", "execution_steps"))
    want = views(emu)
    rows = loaded.sql("SELECT sid, flow_version, initiated_by, status FROM executions")
    assert {r[0] for r in rows} == expected_sids(emu)
    for sid, version, initiated_by, status in rows:
        script = want[sid].script
        assert (version, initiated_by, status) == (script.flow_version, script.initiated_by, want[sid].status)
    assert loaded.scalar("SELECT count(*) FROM execution_steps") == sum(len(v.steps) for v in want.values())
    assert loaded.scalar("SELECT count(DISTINCT execution_sid) FROM executions__widgets") > 0
    # the next run asks the server only for executions created since the oldest active one
    # (or, with none active, since the newest: ended executions never change again)
    oldest_active = {}
    for f in emu.dataset.flows:
        mine = [v for v in want.values() if v.script.flow is f]
        active = [v.script.date_created for v in mine if v.status == "active"]
        oldest_active[f.sid] = min(active) if active else max(v.script.date_created for v in mine)
    assert any(v.status == "active" for v in want.values())
    emu.advance(days=2)
    mark = len(emu.stats.queries)
    loaded.run(source(emu, "executions", "execution_steps"))
    lists = [q for q in emu.stats.queries[mark:] if q.split("?")[0].endswith("/Executions")]
    assert len(lists) == 2
    for flow_sid, created in oldest_active.items():
        stamp = created.strftime("%Y-%m-%dT%H%%3A%M%%3A%SZ")
        assert any(flow_sid in q and f"DateCreatedFrom={stamp}" in q for q in lists), lists
    now = views(emu)
    current = dict(loaded.sql("SELECT sid, status FROM executions"))
    assert all(current[sid] == v.status for sid, v in now.items())


@pytest.mark.slow
def test_step_requests_share_the_account_limit_and_survive_429(
    emulator_factory: EmulatorFactory, loaded: Loaded
) -> None:
    emu = emulator_factory(flows=3, engagements=40, faults=Faults(max_concurrency=2, latency=0.01, retry_after=0))
    loaded.run(source(emu, "engagements", "engagement_steps", max_concurrency=8))
    assert emu.stats.by_status[429] > 0
    want = views(emu)
    assert loaded.scalar("SELECT count(*) FROM engagement_steps") == sum(len(v.steps) for v in want.values())


def test_steps_and_executions_are_not_loaded_unless_selected(emulator: Emulator, loaded: Loaded) -> None:
    loaded.run(make_source(emulator.base_url))
    tables = {r[0] for r in loaded.sql("SHOW TABLES")}
    assert "engagements" in tables and not {"engagement_steps", "executions", "execution_steps"} & tables
    assert step_requests(emulator) == []


def test_row_tables_load_from_parquet_into_duckdb_with_dlt_defaults(emulator: Emulator, tmp_path: Any) -> None:
    # dlt's default for rows is INSERT statements, which DuckDB parses slowly and holds whole in memory
    pipeline = duckdb_pipeline(tmp_path)
    pipeline.run(source(emulator, "flows", "flow_revisions", "engagements", "engagement_steps"))
    jobs = pipeline.last_trace.last_load_info.load_packages[0].jobs["completed_jobs"]
    formats: dict[str, set[str]] = {}
    for job in jobs:  # the data files; a merge adds a `sql` job of its own
        if job.job_file_info.file_format != "sql":
            formats.setdefault(job.job_file_info.table_name, set()).add(job.job_file_info.file_format)
    tables = ("flows", "flow_revisions", "flow_states", "flow_transitions", "engagement_steps",
              "engagement_steps__widgets", "engagements")  # fmt: skip
    assert {t: formats.get(t) for t in tables} == {t: {"parquet"} for t in tables}
    want = views(emulator)
    with pipeline.sql_client() as client:
        steps = client.execute_sql("SELECT count(*), count(DISTINCT sid) FROM engagement_steps")[0]
    assert tuple(steps) == (sum(len(v.steps) for v in want.values()),) * 2  # the values: the tests above
