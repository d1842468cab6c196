"""End to end into a real PostgreSQL: the same rows and merged values as DuckDB.

Set TWILIO_STUDIO_TEST_POSTGRES=postgresql://user:pw@127.0.0.1:5432/db (``.ci/run`` does). Without
it these tests skip on a developer's machine, and fail under CI=true.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.kit.duck import Loaded
from tests.kit.postgres import PgLoaded
from tests.kit.studio import EmulatorFactory, expected_sids, make_source

CHILD_TABLES = ("engagements__widgets", "engagements__widgets__fields", "engagements__flow_data",
                "engagements__flow_variables")  # fmt: skip


def snapshot_pg(pg: PgLoaded) -> dict[str, Any]:
    out: dict[str, Any] = {
        "engagements": sorted(
            (sid, status, str(upd))
            for sid, status, upd in pg.sql(
                "SELECT sid, status, extract(epoch from date_updated)::bigint FROM {ds}.engagements"
            )
        )
    }
    for table in CHILD_TABLES:
        out[table] = pg.sql(f"SELECT count(*) FROM {{ds}}.{table}")[0][0]
    # empty strings stay empty strings (dlt's CSV path would load them as NULL)
    out["plain_flow_data"] = pg.sql("SELECT count(*) FROM {ds}.engagements__flow_data WHERE path = ''")[0][0]
    return out


def snapshot_duck(duck: Loaded) -> dict[str, Any]:
    out: dict[str, Any] = {
        "engagements": sorted(
            (sid, status, str(upd))
            for sid, status, upd in duck.sql("SELECT sid, status, epoch(date_updated)::bigint FROM engagements")
        )
    }
    for table in CHILD_TABLES:
        out[table] = duck.scalar(f"SELECT count(*) FROM {table}")
    out["plain_flow_data"] = duck.scalar("SELECT count(*) FROM engagements__flow_data WHERE path = ''")
    return out


def test_postgres_matches_duckdb_through_incremental_runs(
    emulator_factory: EmulatorFactory, loaded: Loaded, pg: PgLoaded
) -> None:
    emu = emulator_factory(flows=3, engagements=60)
    loaded.run(make_source(emu.base_url))
    pg.run(make_source(emu.base_url))
    assert snapshot_pg(pg) == snapshot_duck(loaded)
    assert {r[0] for r in pg.sql("SELECT sid FROM {ds}.engagements")} == expected_sids(emu)
    assert "engagements" not in pg.run(make_source(emu.base_url))  # nothing changed: nothing written
    emu.advance(days=3)
    loaded.run(make_source(emu.base_url))
    written = pg.run(make_source(emu.base_url))
    assert written["engagements"] > 0
    assert snapshot_pg(pg) == snapshot_duck(loaded)  # merged values and replaced child rows agree


def test_sixty_flows_with_distinct_widget_names_load_into_postgres(
    emulator_factory: EmulatorFactory, pg: PgLoaded
) -> None:
    emu = emulator_factory(flows=60, engagements=4)
    pg.run(make_source(emu.base_url))
    assert pg.sql("SELECT count(*) FROM {ds}.engagements")[0][0] == len(expected_sids(emu))
    widths = pg.sql(
        "SELECT table_name, count(*) FROM information_schema.columns WHERE table_schema = '{ds}' GROUP BY 1"
    )
    assert max(w for _, w in widths) < 60
    assert pg.sql("SELECT count(DISTINCT name) FROM {ds}.engagements__widgets")[0][0] >= 300


DEFINITION_QUERIES = {
    "revisions": "SELECT flow_sid, revision, status, commit_message FROM {ds}.flow_revisions",
    "states": "SELECT flow_sid, revision, name, type, position FROM {ds}.flow_states",
    "transitions": "SELECT flow_sid, revision, from_state, position, event, to_state FROM {ds}.flow_transitions",
    "flows": "SELECT sid, revision, commit_message, valid FROM {ds}.flows",
    "steps": "SELECT sid, widget, event, transitioned_to, step_index, dwell_seconds, is_terminal "
    "FROM {ds}.engagement_steps",
    # the README's join: each engagement's revision, the one published when it was created
    "engagement_revision": "SELECT e.sid, (SELECT max(r.revision) FROM {ds}.flow_revisions r "
    "WHERE r.flow_sid = e.flow_sid AND r.status = 'published' AND r.date_created <= e.date_created) "
    "FROM {ds}.engagements e",
}


@pytest.mark.parametrize("query", list(DEFINITION_QUERIES), ids=list(DEFINITION_QUERIES))
def test_definitions_and_steps_in_postgres_match_duckdb(
    emulator_factory: EmulatorFactory, loaded: Loaded, pg: PgLoaded, query: str
) -> None:
    emu = emulator_factory(flows=3, engagements=40)
    resources = ("flows", "flow_revisions", "engagements", "engagement_steps")
    loaded.run(make_source(emu.base_url).with_resources(*resources))
    pg.run(make_source(emu.base_url).with_resources(*resources))
    sql = DEFINITION_QUERIES[query]
    got = sorted(pg.sql(sql), key=str)
    assert got and got == sorted(loaded.sql(sql.replace("{ds}.", "")), key=str)
    # JSON columns are jsonb: a definition's states are reachable by path
    names = pg.sql("SELECT count(*) FROM {ds}.flows WHERE definition -> 'states' -> 0 ->> 'name' = 'Trigger'")
    assert names == [(3,)]


@pytest.mark.parametrize(
    "loader_file_format",
    [pytest.param(None, id="dlt_defaults"), pytest.param("csv", id="csv_asked_for")],
)
def test_empty_strings_stay_empty_whatever_loader_format_the_user_asks_for(
    emulator_factory: EmulatorFactory, pg: PgLoaded, loader_file_format: str | None
) -> None:
    emu = emulator_factory(flows=2, engagements=60)
    kwargs = {"loader_file_format": loader_file_format} if loader_file_format else {}
    pg.pipeline.run(make_source(emu.base_url), **kwargs)
    assert_no_blank_became_null(pg)


def test_empty_strings_stay_empty_in_a_postgres_destination_of_another_name(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    # a warehouse named in dlt's config ([destination.warehouse] destination_type = "postgres") is
    # still PostgreSQL: its loader files must be the exact ones too
    emu = emulator_factory(flows=2, engagements=60)
    pg = PgLoaded(tmp_path, destination_name="warehouse")
    try:
        assert pg.pipeline.destination.destination_name == "warehouse"
        pg.pipeline.run(make_source(emu.base_url))
        assert_no_blank_became_null(pg)
    finally:
        pg.drop()


def assert_no_blank_became_null(pg: PgLoaded) -> None:
    """Plain flow data (``path`` '') is there, and no ``path`` was loaded as NULL."""
    blank, null = pg.sql(
        "SELECT count(*) FILTER (WHERE path = ''), count(*) FILTER (WHERE path IS NULL) "
        "FROM {ds}.engagements__flow_data"
    )[0]
    assert blank > 0 and null == 0
