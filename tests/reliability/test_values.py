"""Big, deep and odd values: a 5 MB context, 50 levels of nesting, emoji, right-to-left text, NULs.

They load into DuckDB, and into PostgreSQL when TWILIO_STUDIO_TEST_POSTGRES is set (skipped without
it on a developer's machine, a failure under CI=true, as in tests/postgres). Expected values are
written out here, not computed with the connector's own code.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest

from tests.kit.duck import Loaded
from tests.kit.loopback import Answer, DynamicStudio, engagement, flow, page, routes
from tests.kit.studio import make_source

POSTGRES_URL = os.environ.get("TWILIO_STUDIO_TEST_POSTGRES")
FLOW = "FW" + "5" * 32
BLOB = 4_500_000  # characters of one string output
ITEMS = 5_000  # objects in one array output
DEPTH = 50
GREAT = "Great service 👍 خدمة ممتازة"
RTL = "\u202bמה שלומך? مرحبا بالعالم\u202c"
EMOJI = "🎉 👨\u200d👩\u200d👧 🇦🇪"
ADDRESS = "whatsapp:+٩٧١٥٠١٢٣٤٥٦٧"


def nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth, 0, -1):
        value = {f"l{level}": value}
    return value


DEEP_PATH = ".".join(f"l{n}" for n in range(1, DEPTH + 1))


def big_context() -> dict[str, Any]:
    items = [{"n": n, "s": "é✓"} for n in range(ITEMS)]
    return {"widgets": {"big": {"parsed": {"blob": "x" * BLOB, "items": items}, "status_code": 200}}}


def records() -> dict[str, dict[str, Any]]:
    """The odd engagements by name; none of them contains a NUL but "nul"."""
    return {
        "big": engagement(FLOW, 1, context=big_context()),
        "deep": engagement(FLOW, 2, context={"widgets": {"deep": nested(DEPTH, "bottom")},
                                             "flow": {"data": {"nest": nested(DEPTH, 7)}}}),
        "unicode": engagement(FLOW, 3, contact_channel_address=ADDRESS, context={
            "widgets": {"ask_😀": {"inbound": {"Body": GREAT}}}, "flow": {"data": {"rtl": RTL, "emoji": EMOJI}},
        }),
        "nul": engagement(FLOW, 4, contact_channel_address="+1555\x000000", context={
            "widgets": {"ask": {"inbound": {"Body": "yes\x00no"}}}, "flow": {"data": {"nul": "a\x00b"}},
        }),
    }  # fmt: skip


def serve(names: list[str]) -> DynamicStudio:
    chosen = [records()[n] for n in names]
    return DynamicStudio(
        routes(
            {
                f"/v1/Flows/{FLOW}": Answer(200, flow(FLOW)),
                f"/v1/Flows/{FLOW}/Engagements?PageSize=1000": Answer(200, page("engagements", chosen, None)),
            }
        )
    )


def as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value  # psycopg2 parses jsonb itself


def check_values(sql: Callable[[str], list[tuple[Any, ...]]], names: list[str], nul_kept: bool = False) -> None:
    """What every destination must hold for the odd engagements ``names``; ``{ds}`` is the dataset."""
    by_name = records()
    sid = {name: by_name[name]["sid"] for name in names}
    contexts = {s: as_json(c) for s, c in sql("SELECT sid, context FROM {ds}.engagements")}
    assert set(contexts) == set(sid.values())
    fields = sql("SELECT engagement_sid, widget, path, value FROM {ds}.engagements__widgets__fields")
    widgets = sql("SELECT engagement_sid, name, inbound_body, outputs FROM {ds}.engagements__widgets")
    data = sql("SELECT engagement_sid, key, path, value FROM {ds}.engagements__flow_data")
    if "big" in sid:
        assert contexts[sid["big"]] == big_context()  # the raw JSON round-trips, all 5 MB of it
        big = {(p, v) for s, w, p, v in fields if s == sid["big"]}
        assert len(big) == 2 + 2 * ITEMS
        assert ("parsed.blob", "x" * BLOB) in big and ("parsed.items[4999].s", "é✓") in big
    if "deep" in sid:
        assert contexts[sid["deep"]] == by_name["deep"]["context"]
        assert [(p, v) for s, w, p, v in fields if s == sid["deep"]] == [(DEEP_PATH, "bottom")]
        assert [as_json(o) for s, n, b, o in widgets if s == sid["deep"]] == [nested(DEPTH, "bottom")]
        assert [(k, p, v) for s, k, p, v in data if s == sid["deep"]] == [("nest", DEEP_PATH, "7")]
    if "unicode" in sid:
        assert contexts[sid["unicode"]] == by_name["unicode"]["context"]
        assert [(n, b) for s, n, b, o in widgets if s == sid["unicode"]] == [("ask_😀", GREAT)]
        assert sorted((k, v) for s, k, p, v in data if s == sid["unicode"]) == [("emoji", EMOJI), ("rtl", RTL)]
        assert sql(f"SELECT contact_channel_address FROM {{ds}}.engagements WHERE sid = '{sid['unicode']}'") == [
            (ADDRESS,)
        ]
    if "nul" in sid:  # NUL is removed from everything that comes out of the context, raw JSON included
        assert contexts[sid["nul"]] == {"widgets": {"ask": {"inbound": {"Body": "yesno"}}},
                                        "flow": {"data": {"nul": "ab"}}}  # fmt: skip
        assert [(b, as_json(o)) for s, n, b, o in widgets if s == sid["nul"]] == [
            ("yesno", {"inbound": {"Body": "yesno"}})
        ]
        assert [v for s, k, p, v in data if s == sid["nul"]] == ["ab"]
        # the list's own text fields: DuckDB stores them as sent, dlt's INSERT files for PostgreSQL drop the NUL
        address = sql(f"SELECT contact_channel_address FROM {{ds}}.engagements WHERE sid = '{sid['nul']}'")
        assert address == [("+1555\x000000",) if nul_kept else ("+15550000",)]


ALL = ["big", "deep", "unicode", "nul"]


def test_big_deep_and_odd_values_load_into_duckdb(loaded: Loaded) -> None:
    with serve(ALL) as studio:
        loaded.run(make_source(studio.base_url, flow_sids=[FLOW], widget_fields="all"))
    check_values(lambda q: loaded.sql(q.replace("{ds}.", "")), ALL, nul_kept=True)


# ---------------------------------------------------------------------------- PostgreSQL
@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Any]:
    if not POSTGRES_URL:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but TWILIO_STUDIO_TEST_POSTGRES is not set: .ci/run must start PostgreSQL")
        pytest.skip("set TWILIO_STUDIO_TEST_POSTGRES to run the PostgreSQL tests")
    dataset = f"ts_rel_{uuid.uuid4().hex[:10]}"
    pipeline = dlt.pipeline(
        pipeline_name=f"pg_{dataset}",
        destination=dlt.destinations.postgres(credentials=POSTGRES_URL),
        dataset_name=dataset,
        pipelines_dir=str(tmp_path / "pg_pipelines"),
    )
    yield pipeline
    with pipeline.sql_client() as client:
        for schema in (dataset, f"{dataset}_staging"):
            client.execute_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def pg_sql(pipeline: Any) -> Callable[[str], list[tuple[Any, ...]]]:
    def sql(query: str) -> list[tuple[Any, ...]]:
        with pipeline.sql_client() as client:
            return [tuple(r) for r in client.execute_sql(query.replace("{ds}", pipeline.dataset_name))]

    return sql


def test_big_deep_and_unicode_values_load_into_postgres(pg: Any) -> None:
    names = ["big", "deep", "unicode"]
    with serve(names) as studio:
        pg.run(make_source(studio.base_url, flow_sids=[FLOW], widget_fields="all"))
    check_values(pg_sql(pg), names)


def test_nul_characters_load_into_postgres(pg: Any) -> None:
    with serve(["nul"]) as studio:
        pg.run(make_source(studio.base_url, flow_sids=[FLOW], widget_fields="all"))
    check_values(pg_sql(pg), ["nul"])  # jsonb refuses \u0000: a NUL in the raw JSON would fail the load


def serve_too_deep() -> DynamicStudio:
    too_deep = engagement(FLOW, 9, context={"widgets": {"deep": nested(300, "bottom")}})
    return DynamicStudio(
        routes(
            {
                f"/v1/Flows/{FLOW}": Answer(200, flow(FLOW)),
                f"/v1/Flows/{FLOW}/Engagements?PageSize=1000": Answer(200, page("engagements", [too_deep], None)),
            }
        )
    )


def test_a_context_nested_300_levels_deep_still_loads_its_engagement(loaded: Loaded) -> None:
    """Past orjson's 254 levels the raw JSON cannot be written: the engagement loads without it."""
    with serve_too_deep() as studio:
        loaded.run(make_source(studio.base_url, flow_sids=[FLOW]))
    assert loaded.sql("SELECT sid, context IS NULL FROM engagements") == [(f"FN{9:032x}", True)]


@pytest.mark.parametrize("write_mode", ["merge", "scd2", "append"])
def test_a_context_too_deep_to_store_is_logged(
    loaded: Loaded, caplog: pytest.LogCaptureFixture, write_mode: str
) -> None:
    caplog.set_level(logging.WARNING, logger="twilio_studio")
    with serve_too_deep() as studio:
        loaded.run(make_source(studio.base_url, flow_sids=[FLOW], write_mode=write_mode))
    assert loaded.scalar("SELECT count(*) FROM engagements") == 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "twilio_studio" and r.levelno == logging.WARNING]
    assert any("nested deeper than" in w and f"FN{9:032x}" in w for w in warnings), warnings
