"""Flow definitions and revisions: flows gains the v2 fields; flow_revisions, flow_states, flow_transitions."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from tests.kit.duck import Loaded
from tests.kit.loopback import ScriptedStudio, engagement, flow, page
from tests.kit.studio import EmulatorFactory, expected_sids, listed, make_source
from twilio_studio.emulator import Dataset, Emulator, Faults

REVISION_PATH = "/Revisions/"


def revision_fetches(emu: Emulator, since: int = 0) -> list[str]:
    return [p for p in emu.stats.paths[since:] if REVISION_PATH in p]


def as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def test_default_load_has_every_revision_state_and_transition(emulator: Emulator, loaded: Loaded) -> None:
    written = loaded.run(make_source(emulator.base_url))
    d = emulator.dataset
    assert written["flow_revisions"] == sum(len(f.revisions) for f in d.flows)
    flows = {r[0]: r[1:] for r in loaded.sql("SELECT sid, revision, commit_message, valid, definition FROM flows")}
    for f in d.flows:
        latest = f.revisions[-1]
        revision, message, valid, definition = flows[f.sid]
        assert (revision, message, valid) == (latest.number, latest.commit_message, True)
        assert as_json(definition) == latest.definition()
    revisions = loaded.sql(
        "SELECT flow_sid, revision, status, commit_message, date_created, definition FROM flow_revisions"
    )
    assert sorted((r[0], r[1]) for r in revisions) == sorted((f.sid, r.number) for f in d.flows for r in f.revisions)
    for sid, number, status, message, created, definition in revisions:
        want = d.flows_by_sid[sid].revisions[number - 1]
        assert (status, message, created) == (want.status, want.commit_message, want.date_created)
        assert as_json(definition) == want.definition()
    transitions = loaded.sql(
        "SELECT flow_sid, revision, from_state, position, event, to_state, conditions FROM flow_transitions"
    )
    want_transitions = {
        (f.sid, r.number, s.name, n): (t.event, t.next, [dict(c) for c in t.conditions] or None)
        for f in d.flows for r in f.revisions for s in r.states for n, t in enumerate(s.transitions)
    }  # fmt: skip
    assert {row[:4]: (row[4], row[5], as_json(row[6])) for row in transitions} == want_transitions
    assert loaded.scalar("SELECT count(*) FROM flow_transitions WHERE to_state IS NULL") > 0  # branches that end


def test_states_rows_match_the_definition(emulator: Emulator, loaded: Loaded) -> None:
    loaded.run(make_source(emulator.base_url))
    d = emulator.dataset
    rows = loaded.sql("SELECT flow_sid, revision, name, type, position, properties FROM flow_states")
    want = {
        (f.sid, r.number, s.name): (s.type, n, s.properties)
        for f in d.flows for r in f.revisions for n, s in enumerate(r.states)
    }  # fmt: skip
    assert {row[:3]: (row[3], row[4], as_json(row[5])) for row in rows} == want


def test_a_revision_already_loaded_is_never_fetched_again(emulator: Emulator, loaded: Loaded) -> None:
    loaded.run(make_source(emulator.base_url))
    assert len(revision_fetches(emulator)) == sum(len(f.revisions) for f in emulator.dataset.flows)
    mark = len(emulator.stats.paths)
    written = loaded.run(make_source(emulator.base_url))
    assert revision_fetches(emulator, mark) == []
    assert not {"flow_revisions", "flow_states", "flow_transitions"} & set(written)
    lists = [p for p in emulator.stats.paths[mark:] if p.endswith("/Revisions")]
    assert len(lists) == len(emulator.dataset.flows)  # one list page per flow and run


def test_executions_join_the_states_of_their_revision(emulator_factory: EmulatorFactory, loaded: Loaded) -> None:
    emu = emulator_factory(flows=3, engagements=120)
    loaded.run(make_source(emu.base_url).with_resources("flows", "flow_revisions", "executions", "execution_steps"))
    # every step's widget is a state of the execution's revision, with the step's type
    unmatched = loaded.sql(
        "SELECT count(*) FROM execution_steps s JOIN executions e ON e.sid = s.execution_sid "
        "LEFT JOIN flow_states st ON st.flow_sid = e.flow_sid AND st.revision = e.flow_version "
        "AND st.name = s.widget WHERE st.name IS NULL OR st.type <> s.type"
    )
    assert unmatched == [(0,)]
    versions = loaded.sql("SELECT count(DISTINCT flow_version) FROM executions")[0][0]
    assert versions >= 3


def test_engagements_join_the_revision_published_when_they_were_created(emulator: Emulator, loaded: Loaded) -> None:
    loaded.run(make_source(emulator.base_url))
    got = dict(
        loaded.sql(
            "SELECT e.sid, (SELECT max(r.revision) FROM flow_revisions r WHERE r.flow_sid = e.flow_sid "
            "AND r.status = 'published' AND r.date_created <= e.date_created) FROM engagements e"
        )
    )
    want = {script.sid: script.flow_version for script in listed(emulator)}
    assert got == want and set(got) == expected_sids(emulator)
    assert len(set(Counter(want.values()))) >= 2


def test_column_counts_stay_bounded_with_2000_states(tmp_path: Any) -> None:
    widths = []
    for extra in (0, 1991):
        loaded = Loaded(tmp_path, f"width{extra}")
        with Emulator(Dataset(seed=3, flows=2, engagements_per_flow=10, extra_states=extra)) as emu:
            loaded.run(make_source(emu.base_url))
        widths.append(
            {
                t: len(loaded.sql(f"DESCRIBE {t}"))
                for t in ("flows", "flow_revisions", "flow_states", "flow_transitions")
            }
        )
        if extra:
            states = loaded.scalar(
                "SELECT max(n) FROM (SELECT count(*) AS n FROM flow_states GROUP BY flow_sid, revision) t"
            )
            assert states == 2000
    assert widths[0] == widths[1]


# ---------------------------------------------------------------------------------- scripted answers
FW = "FW" + "1" * 32


def v2_flow(revision: int, definition: Any) -> dict[str, Any]:
    return {
        "sid": FW, "account_sid": "AC" + "a" * 32, "friendly_name": "Scripted", "definition": definition,
        "status": "published", "revision": revision, "commit_message": f"rev {revision}", "valid": True,
        "date_created": "2026-01-01T00:00:00Z", "date_updated": "2026-01-02T00:00:00Z", "url": "{base}/v2/Flows/" + FW,
    }  # fmt: skip


DEFINITION = {
    "description": "", "initial_state": "Trigger", "flags": {"allow_concurrent_calls": True},
    "states": [
        {"name": "Trigger", "type": "trigger", "transitions": [{"event": "incomingRequest", "next": "brand_new"}],
         "properties": {}},
        {"name": "brand_new", "type": "connect-virtual-agent-v9", "properties": {"x": "\u0000y"},
         "transitions": [{"event": "done", "next": ""}, {"event": "failed"}, "not a transition"]},
        {"name": "brand_new", "type": "say-play", "transitions": []},  # a duplicate name: skipped
        {"type": "say-play"},  # no name: skipped
        "not a state",
    ],
}  # fmt: skip


def script(studio: ScriptedStudio, revisions: list[int]) -> None:
    studio.routes["/v1/Flows?PageSize=1000"] = (200, page("flows", [flow(FW)], None))
    studio.routes[f"/v2/Flows/{FW}"] = (200, v2_flow(revisions[-1], DEFINITION))
    items = [{**v2_flow(n, None), "url": "{base}/v2/Flows/" + FW + f"/Revisions/{n}"} for n in reversed(revisions)]
    studio.routes[f"/v2/Flows/{FW}/Revisions?PageSize=100"] = (200, page("revisions", items, None))
    for n in revisions:
        studio.routes[f"/v2/Flows/{FW}/Revisions/{n}"] = (200, {**v2_flow(n, json.dumps(DEFINITION)), "revision": n})
    studio.routes[f"/v1/Flows/{FW}/Engagements?PageSize=1000"] = (200, page("engagements", [engagement(FW, 1)], None))


def test_only_new_revisions_are_fetched_and_odd_definitions_load(loaded: Loaded) -> None:
    with ScriptedStudio() as studio:
        script(studio, [1, 2])
        loaded.run(make_source(studio.base_url))
        assert [p for p in studio.requests if REVISION_PATH in p] == [
            f"/v2/Flows/{FW}/Revisions/1",
            f"/v2/Flows/{FW}/Revisions/2",
        ]
        script(studio, [1, 2, 3])
        studio.requests.clear()
        written = loaded.run(make_source(studio.base_url))
        assert [p for p in studio.requests if REVISION_PATH in p] == [f"/v2/Flows/{FW}/Revisions/3"]
        assert written["flow_revisions"] == 1
    assert loaded.sql("SELECT revision FROM flow_revisions ORDER BY 1") == [(1,), (2,), (3,)]
    states = loaded.sql("SELECT name, type, position, properties FROM flow_states WHERE revision = 3 ORDER BY position")
    assert [s[:3] for s in states] == [("Trigger", "trigger", 0), ("brand_new", "connect-virtual-agent-v9", 1)]
    assert as_json(states[1][3]) == {"x": "y"}  # NUL removed: PostgreSQL's jsonb refuses it
    transitions = loaded.sql(
        "SELECT from_state, event, to_state FROM flow_transitions WHERE revision = 3 ORDER BY 1, 2"
    )
    assert transitions == [
        ("Trigger", "incomingRequest", "brand_new"),
        ("brand_new", "done", None),
        ("brand_new", "failed", None),
    ]


def test_a_server_without_v2_loads_flows_without_definitions(loaded: Loaded, caplog: pytest.LogCaptureFixture) -> None:
    with ScriptedStudio() as studio:
        studio.routes["/v1/Flows?PageSize=1000"] = (200, page("flows", [flow(FW)], None))
        studio.routes[f"/v1/Flows/{FW}/Engagements?PageSize=1000"] = (
            200,
            page("engagements", [engagement(FW, 1)], None),
        )
        written = loaded.run(make_source(studio.base_url))
    assert written["flows"] == 1 and written["engagements"] == 1 and "flow_revisions" not in written
    assert loaded.sql("SELECT revision, definition FROM flows") == [(None, None)]
    assert f"flow {FW}: GET /v2/Flows/{FW} answered 404: loaded without its definition" in caplog.text


def test_a_first_load_appends_the_definition_tables_and_later_runs_merge(loaded: Loaded) -> None:
    tables = ("flows", "flow_revisions", "flow_states", "flow_transitions")
    with ScriptedStudio() as studio:
        script(studio, [1, 2])
        loaded.run(make_source(studio.base_url))
        schema = loaded.pipeline.default_schema.tables
        assert {t: schema[t]["write_disposition"] for t in tables} == dict.fromkeys(tables, "append")
        assert schema["flow_states"]["columns"]["name"].get("primary_key")  # keyed for the merges to come
        # nothing to merge with: no staging dataset on the first load
        staging = "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'twilio_studio_staging'"
        assert loaded.scalar(staging) == 0
        script(studio, [1, 2, 3])
        studio.routes["/v1/Flows?PageSize=1000"] = (
            200,
            page("flows", [{**flow(FW), "friendly_name": "Renamed", "date_updated": "2026-01-03T00:00:00Z"}], None),
        )
        loaded.run(make_source(studio.base_url))
        loaded.run(make_source(studio.base_url))  # nothing new: flows merged again, no revision fetched
    schema = loaded.pipeline.default_schema.tables
    assert {t: schema[t]["write_disposition"] for t in tables} == dict.fromkeys(tables, "merge")
    assert loaded.sql("SELECT sid, friendly_name, revision FROM flows") == [(FW, "Renamed", 3)]
    assert loaded.sql("SELECT revision, count(*) FROM flow_states GROUP BY 1 ORDER BY 1") == [(1, 2), (2, 2), (3, 2)]


def test_a_flow_listed_twice_is_read_once(loaded: Loaded) -> None:
    with ScriptedStudio() as studio:
        script(studio, [1])
        # the list moved while it was read: the flow shows on both pages
        studio.routes["/v1/Flows?PageSize=1000"] = (200, page("flows", [flow(FW)], "{base}/v1/Flows?Page=1"))
        studio.routes["/v1/Flows?Page=1"] = (200, page("flows", [flow(FW)], None))
        written = loaded.run(make_source(studio.base_url))
        walks = [p for p in studio.requests if p.startswith(f"/v1/Flows/{FW}/Engagements")]
    assert written["flows"] == 1 and written["engagements"] == 1 and written["flow_revisions"] == 1
    assert len(walks) == 1
    assert loaded.sql("SELECT count(*), count(DISTINCT sid) FROM engagements") == [(1, 1)]


def test_engagement_lists_are_walked_while_later_flows_revisions_are_still_being_read(
    emulator_factory: EmulatorFactory, loaded: Loaded
) -> None:
    emu = emulator_factory(flows=6, engagements=20, faults=Faults(latency=0.02))
    loaded.run(make_source(emu.base_url, max_concurrency=2))
    paths = emu.stats.paths
    revisions = [i for i, p in enumerate(paths) if REVISION_PATH in p]
    lists = [i for i, p in enumerate(paths) if p.endswith("/Engagements")]
    assert len(revisions) == sum(len(f.revisions) for f in emu.dataset.flows) > len(emu.dataset.flows)
    # the first flow's revisions, then its engagements, while the others' revisions are still to come
    assert lists and min(lists) < max(revisions)
    assert {r[0] for r in loaded.sql("SELECT sid FROM engagements")} == expected_sids(emu)
