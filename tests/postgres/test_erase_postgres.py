"""Erasure of one contact in PostgreSQL, through dlt's sql_client.

The contact's address and hash are nowhere afterwards (dataset and staging dataset), every other row
is as it was.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kit.postgres import PgLoaded
from tests.kit.scenarios import ERASURE_KEY, WITH_STEPS, contact_with_steps
from tests.kit.studio import make_source
from twilio_studio.emulator import Dataset, Emulator
from twilio_studio.erase import contact_values, erase_contact


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[PgLoaded]:
    loaded = PgLoaded(tmp_path)
    yield loaded
    loaded.drop()


def snapshot(pg: PgLoaded, schema: str) -> dict[str, Counter[tuple[str, ...]]]:
    tables = [r[0] for r in pg.sql(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}' "
        "AND table_name NOT LIKE '\\_dlt%'"
    )]  # fmt: skip
    return {t: Counter(tuple(map(str, r)) for r in pg.sql(f'SELECT * FROM "{schema}"."{t}"')) for t in tables}


def cells_with(pg: PgLoaded, needles: list[str]) -> list[str]:
    """Every text or JSON column, of the dataset and its staging dataset, that holds one of ``needles``.

    One query per table (a count per column and needle), on PgLoaded's one connection.
    """
    columns = pg.sql(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns "
        f"WHERE table_schema IN ('{pg.dataset}', '{pg.dataset}_staging') "
        "AND data_type IN ('text', 'character varying', 'jsonb', 'json')"
    )
    by_table: dict[tuple[str, str], list[str]] = {}
    for schema, table, column in columns:
        by_table.setdefault((schema, table), []).append(column)
    hits = []
    for (schema, table), names in sorted(by_table.items()):
        checks = [(column, needle) for column in names for needle in needles]
        counts = ", ".join(
            f"""count(*) FILTER (WHERE "{column}"::text LIKE '%%{needle}%%')""" for column, needle in checks
        )
        row = pg.sql(f'SELECT {counts} FROM "{schema}"."{table}"')[0]
        hits += sorted({f"{schema}.{table}.{column}" for (column, _), n in zip(checks, row, strict=True) if n})
    return hits


@pytest.mark.slow
@pytest.mark.parametrize(
    ("write_mode", "key"),
    [pytest.param("merge", ERASURE_KEY, id="merge_pseudonymized"), pytest.param("scd2", None, id="scd2_every_version")],
)
def test_erase_in_postgres(pg: PgLoaded, write_mode: str, key: str | None) -> None:
    options: dict[str, Any] = {"write_mode": write_mode, "widget_fields": "all"}
    if key:
        options["pseudonymize_key"] = key
    with Emulator(Dataset(seed=31, flows=2, engagements_per_flow=40, long_running_share=0.5)) as emu:
        pg.run(make_source(emu.base_url, **options).with_resources(*WITH_STEPS))
        first = emu.now()
        emu.advance(hours=30)
        pg.run(make_source(emu.base_url, **options).with_resources(*WITH_STEPS))
        address = contact_with_steps(emu, since=first)
    needles = contact_values(address, key)
    assert cells_with(pg, needles)
    schemas = (pg.dataset, f"{pg.dataset}_staging")
    before = {s: snapshot(pg, s) for s in schemas}

    dry = erase_contact(pg.pipeline, address, pseudonymize_key=key, dry_run=True)
    assert {s: snapshot(pg, s) for s in schemas} == before and dry.total > 10
    done = erase_contact(pg.pipeline, address, pseudonymize_key=key)
    assert done.rows == dry.rows
    assert cells_with(pg, needles) == []
    for schema in schemas:
        after = snapshot(pg, schema)
        for table, rows in before[schema].items():
            assert not after[table] - rows, f"{schema}.{table} gained or changed rows"
            assert sum((rows - after[table]).values()) == done.rows.get(f"{schema}.{table}", 0), table
