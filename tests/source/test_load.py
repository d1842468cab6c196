"""End to end: the source against the emulator, into a real DuckDB."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import pytest

from tests.kit.duck import Loaded
from tests.kit.loopback import ScriptedStudio, engagement, page
from tests.kit.loopback import flow as flow_record
from tests.kit.studio import DEFAULT_ENGAGEMENTS, EmulatorFactory, expected_sids, listed, listed_views, make_source
from tests.kit.tables import engagement_cursors
from twilio_studio.emulator import Emulator


def test_multi_page_walk_loads_every_record_exactly_once(emulator: Emulator, loaded: Loaded) -> None:
    written = loaded.run(make_source(emulator.base_url, page_size=7))
    expected = expected_sids(emulator)
    assert written["engagements"] == len(expected) == DEFAULT_ENGAGEMENTS
    rows = loaded.sql("SELECT sid FROM engagements")
    assert sorted(r[0] for r in rows) == sorted(expected)
    # 60 engagements per flow at 7 a page: 9 pages per flow, each requested exactly once
    pages = [p for p in emulator.stats.paths if p.endswith("/Engagements")]
    assert len(pages) == 2 * 9


def test_flow_discovery_loads_every_flow(emulator_factory: EmulatorFactory, loaded: Loaded) -> None:
    emu = emulator_factory(flows=4, engagements=5)
    loaded.run(make_source(emu.base_url))
    flows = loaded.sql("SELECT sid, friendly_name, status FROM flows ORDER BY sid")
    assert [f[0] for f in flows] == sorted(f.sid for f in emu.dataset.flows)
    assert loaded.scalar("SELECT count(DISTINCT flow_sid) FROM engagements") == 4


def test_flow_sids_load_only_those_flows(emulator_factory: EmulatorFactory, loaded: Loaded) -> None:
    emu = emulator_factory(flows=3, engagements=10)
    wanted = emu.dataset.flows[1].sid
    loaded.run(make_source(emu.base_url, flow_sids=[wanted]))
    assert loaded.sql("SELECT DISTINCT flow_sid FROM engagements") == [(wanted,)]
    assert loaded.sql("SELECT sid FROM flows") == [(wanted,)]
    assert "/v1/Flows" not in emulator_paths(emu)  # no discovery when flows are named


def emulator_paths(emu: Emulator) -> list[str]:
    return list(emu.stats.paths)


def test_rerun_with_nothing_changed_writes_no_engagement_rows(emulator: Emulator, loaded: Loaded) -> None:
    first = loaded.run(make_source(emulator.base_url))
    assert first["engagements"] == DEFAULT_ENGAGEMENTS
    second = loaded.run(make_source(emulator.base_url))
    assert not {k: v for k, v in second.items() if k.startswith("engagements")}
    assert loaded.scalar("SELECT count(*) FROM engagements") == DEFAULT_ENGAGEMENTS


def widgets_by_sid(loaded: Loaded) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for sid, name in loaded.sql("SELECT engagement_sid, name FROM engagements__widgets ORDER BY position"):
        out.setdefault(sid, []).append(name)
    return out


def test_changed_engagements_replace_their_row_and_child_rows(
    emulator_factory: EmulatorFactory, loaded: Loaded
) -> None:
    emu = emulator_factory(flows=2, engagements=100)
    loaded.run(make_source(emu.base_url))
    active_before = {r[0] for r in loaded.sql("SELECT sid FROM engagements WHERE status = 'active'")}
    assert active_before, "the dataset must start with active engagements for this test to mean anything"
    emu.advance(days=6)  # replies arrive days later: active ones move on and end
    written = loaded.run(make_source(emu.base_url))
    views = {view.script.sid: view for view in listed_views(emu)}
    changed = {sid for sid in active_before if views[sid].status == "ended"}
    assert changed
    assert written["engagements"] >= len(changed)
    rows = dict(loaded.sql("SELECT sid, status FROM engagements WHERE sid IN (SELECT unnest(?))", sorted(changed)))
    assert set(rows.values()) == {"ended"}
    widgets = widgets_by_sid(loaded)
    for sid in changed:
        # exactly the widgets of the new context: none left from the old version, none twice
        assert widgets.get(sid, []) == list(views[sid].context["widgets"])
    total_widgets = loaded.scalar("SELECT count(*) FROM engagements__widgets")
    assert total_widgets == sum(len(v.context["widgets"]) for v in views.values())
    assert loaded.scalar("SELECT count(*) FROM engagements") == len(views)


def test_engagements_dropped_by_retention_stay_in_the_destination(emulator: Emulator, loaded: Loaded) -> None:
    loaded.run(make_source(emulator.base_url))
    before = {r[0] for r in loaded.sql("SELECT sid FROM engagements")}
    emulator.advance(days=31)
    assert not before & expected_sids(emulator), "Twilio's 30 days must have dropped them"
    loaded.run(make_source(emulator.base_url))
    after = {r[0] for r in loaded.sql("SELECT sid FROM engagements")}
    assert before <= after
    assert expected_sids(emulator) <= after
    assert loaded.scalar("SELECT count(*) FROM engagements__widgets WHERE engagement_sid IN (SELECT unnest(?))",
                         sorted(before)) > 0  # fmt: skip


def test_sixty_flows_with_distinct_widget_names_keep_every_table_narrow(
    emulator_factory: EmulatorFactory, loaded: Loaded
) -> None:
    emu = emulator_factory(flows=60, engagements=4)
    loaded.run(make_source(emu.base_url))
    names = loaded.scalar("SELECT count(DISTINCT name) FROM engagements__widgets")
    assert names >= 300  # 60 flows, each with its own widget names
    widths = loaded.sql(
        "SELECT table_name, count(*) FROM information_schema.columns "
        "WHERE table_schema = 'twilio_studio' GROUP BY table_name"
    )
    assert len(widths) >= 6
    assert max(w for _, w in widths) < 60, widths


def test_plain_sql_answers_widget_and_flow_data_questions(emulator: Emulator, loaded: Loaded) -> None:
    loaded.run(make_source(emulator.base_url))
    flow = emulator.dataset.flows[0]
    widget = flow.widgets[1].name  # a send-and-wait-for-reply or gather widget
    first_flow = [view for view in listed_views(emulator) if view.script.flow == flow]
    expected = {view.script.sid for view in first_flow if widget in view.context["widgets"] and view.status == "ended"}
    got = loaded.sql(
        "SELECT e.sid FROM engagements e JOIN engagements__widgets w ON w.engagement_sid = e.sid "
        "WHERE e.flow_sid = ? AND w.name = ? AND e.status = 'ended'",
        flow.sid, widget,
    )  # fmt: skip
    assert {r[0] for r in got} == expected and expected
    key = flow.data_keys[0]
    values = loaded.sql(
        "SELECT value, count(*) FROM engagements__flow_data WHERE flow_sid = ? AND key = ? GROUP BY value",
        flow.sid, key,
    )  # fmt: skip
    want = Counter(str(view.script.data[key]) for view in first_flow)
    assert dict(values) == want


@pytest.mark.parametrize(
    ("widget_fields", "must_have", "must_not_have"),
    [
        pytest.param("arrays", {"parsed.customer.tags[0]", "parsed.orders[0].total"}, {"inbound.Body"}, id="arrays"),
        pytest.param("all", {"parsed.customer.tags[0]", "inbound.Body", "status_code"}, set(), id="all"),
        pytest.param("none", set(), {"parsed.customer.tags[0]", "inbound.Body"}, id="none"),
    ],
)
def test_widget_fields_and_arrays_become_rows(
    emulator: Emulator, loaded: Loaded, widget_fields: str, must_have: set[str], must_not_have: set[str]
) -> None:
    loaded.run(make_source(emulator.base_url, widget_fields=widget_fields))
    tables = {r[0] for r in loaded.sql("SHOW TABLES")}
    paths = set()
    if "engagements__widgets__fields" in tables:
        paths = {r[0] for r in loaded.sql("SELECT DISTINCT path FROM engagements__widgets__fields")}
    assert must_have <= paths and not must_not_have & paths
    if widget_fields == "arrays":
        assert all("[" in p for p in paths)
    # arrays in flow data become rows whatever widget_fields says
    assert loaded.scalar("SELECT count(*) FROM engagements__flow_data WHERE path LIKE '[%]'") > 0
    # and every output stays whole as JSON
    tier = loaded.scalar(
        "SELECT count(*) FROM engagements__widgets "
        "WHERE outputs->>'$.parsed.customer.tier' IN ('gold', 'silver', 'bronze')"
    )
    assert tier > 0


@pytest.mark.parametrize(
    ("mode", "endpoint_calls", "all_have_context"),
    [
        pytest.param("fetch_missing", True, True, id="fetch_missing_reads_context_endpoint"),
        pytest.param("inline", False, False, id="inline_keeps_what_the_list_has"),
        pytest.param("never", False, False, id="never_loads_no_context"),
    ],
)
def test_context_modes(
    emulator: Emulator, loaded: Loaded, mode: str, endpoint_calls: bool, all_have_context: bool
) -> None:
    hidden = {script.sid for script in listed(emulator) if script.context_only_on_endpoint}
    assert hidden, "the emulator must hide some contexts for this test"
    loaded.run(make_source(emulator.base_url, context_mode=mode))
    calls = [p for p in emulator.stats.paths if p.endswith("/Context")]
    assert len(calls) == (len(hidden) if endpoint_calls else 0)
    empty = {r[0] for r in loaded.sql(
        "SELECT sid FROM engagements WHERE context IS NULL OR CAST(context AS VARCHAR) = '{}'"
    )}  # fmt: skip
    if mode == "never":
        assert loaded.scalar("SELECT count(*) FROM engagements WHERE context IS NOT NULL") == 0
        assert "engagements__widgets" not in {r[0] for r in loaded.sql("SHOW TABLES")}
    elif all_have_context:
        assert not empty
        reached = loaded.scalar(
            "SELECT count(DISTINCT engagement_sid) FROM engagements__widgets "
            "WHERE engagement_sid IN (SELECT unnest(?))",
            sorted(hidden),
        )
        assert reached == len(hidden)
    else:
        assert empty == hidden


def test_null_date_updated_falls_back_to_date_created(emulator_factory: EmulatorFactory, loaded: Loaded) -> None:
    emu = emulator_factory(flows=3, engagements=200)  # flow 2 is an API flow with instant, null-dated runs
    loaded.run(make_source(emu.base_url))
    nulls = loaded.scalar("SELECT count(*) FROM engagements WHERE date_updated IS NULL AND status = 'ended'")
    assert nulls > 0
    second = loaded.run(make_source(emu.base_url))
    assert "engagements" not in second  # null-dated rows are not reloaded each run


def test_start_and_end_date_bound_what_is_loaded(emulator: Emulator, loaded: Loaded) -> None:
    start, end = datetime(2026, 2, 26, tzinfo=timezone.utc), datetime(2026, 2, 28, tzinfo=timezone.utc)
    loaded.run(make_source(emulator.base_url, start_date=start.isoformat(), end_date=end.isoformat()))
    # exactly the engagements whose cursor (date_updated, else date_created) is in [start, end)
    cursors = {view.script.sid: view.date_updated or view.script.date_created for view in listed_views(emulator)}
    within = {sid for sid, cursor in cursors.items() if start <= cursor < end}
    assert within and len(within) < DEFAULT_ENGAGEMENTS  # the window must cut the data for this to mean anything
    assert {r[0] for r in loaded.sql("SELECT sid FROM engagements")} == within
    assert all(c["last_value"] is None for c in engagement_cursors(loaded.pipeline).values())  # no cursor moved ...
    written = loaded.run(make_source(emulator.base_url))  # ... so a normal run afterwards loads everything
    assert loaded.scalar("SELECT count(*) FROM engagements") == len(expected_sids(emulator))
    assert written["engagements"] == len(expected_sids(emulator))


def test_lookback_rereads_recent_engagements(emulator: Emulator, loaded: Loaded) -> None:
    loaded.run(make_source(emulator.base_url))
    assert "engagements" not in loaded.run(make_source(emulator.base_url))
    again = loaded.run(make_source(emulator.base_url, lookback_seconds=3 * 86400))
    assert 0 < again["engagements"] < DEFAULT_ENGAGEMENTS  # the last three days' (tests/source/test_cursors.py)


@pytest.mark.slow
def test_child_rows_go_when_a_new_version_has_none(loaded: Loaded) -> None:
    flow_sid = "FW" + "2" * 32
    first = engagement(
        flow_sid, 1, status="active", context={"flow": {"variables": {"score": 3}}, "widgets": {"a": {"x": 1}}}
    )
    later = engagement(flow_sid, 1, date_updated="2026-03-01T11:00:00Z", context={"widgets": {"b": {"Digits": "1"}}})
    with ScriptedStudio() as studio:
        studio.routes[f"/v1/Flows/{flow_sid}"] = (200, flow_record(flow_sid))
        path = f"/v1/Flows/{flow_sid}/Engagements?PageSize=1000"
        studio.routes[path] = (200, page("engagements", [first], None))
        loaded.run(make_source(studio.base_url, flow_sids=[flow_sid], widget_fields="all"))
        assert loaded.scalar("SELECT count(*) FROM engagements__flow_variables") == 1
        assert loaded.sql("SELECT path FROM engagements__widgets__fields") == [("x",)]
        studio.routes[path] = (200, page("engagements", [later], None))
        loaded.run(make_source(studio.base_url, flow_sids=[flow_sid], widget_fields="all"))
    assert loaded.scalar("SELECT count(*) FROM engagements__flow_variables") == 0
    assert loaded.sql("SELECT name, digits FROM engagements__widgets") == [("b", "1")]
    assert loaded.sql("SELECT path FROM engagements__widgets__fields") == [("Digits",)]
