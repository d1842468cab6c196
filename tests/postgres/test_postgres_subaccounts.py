"""A subaccount load into a real PostgreSQL: each account's rows with its SID, as in DuckDB."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.kit.duck import Loaded
from tests.kit.postgres import PgLoaded
from tests.kit.scenarios import EVERY_TABLE, active, sids_of
from tests.kit.studio import make_source
from twilio_studio import account_report
from twilio_studio.emulator import Dataset, Emulator, Subaccount


@pytest.fixture
def emu() -> Iterator[Emulator]:
    subs = Subaccount.generate(3, flows=2, engagements_per_flow=25, statuses={2: "closed"})
    with Emulator(Dataset(seed=11, flows=2, engagements_per_flow=30), subaccounts=subs) as emulator:
        yield emulator


def source(emu: Emulator) -> Any:
    src = make_source(emu.base_url, accounts_base_url=emu.base_url, subaccounts="all")
    return src.with_resources("flows", "engagements", "engagement_steps")


@pytest.mark.slow
def test_subaccounts_load_into_postgres_as_into_duckdb(emu: Emulator, pg: PgLoaded, loaded: Loaded) -> None:
    with account_report() as report:
        pg.run(source(emu))
    assert report.failed == {}
    loaded.run(source(emu))
    for table in EVERY_TABLE:
        in_pg = sorted(pg.sql(f"SELECT account_sid, count(*) FROM {{ds}}.{table} GROUP BY 1"))
        assert in_pg == sorted(loaded.sql(f"SELECT account_sid, count(*) FROM {table} GROUP BY 1")), table
        assert {sid for sid, _ in in_pg} == set(active(emu)), table
    for account in active(emu):
        got = {r[0] for r in pg.sql(f"SELECT sid FROM {{ds}}.engagements WHERE account_sid = '{account}'")}
        assert got == sids_of(emu, account)
    emu.advance(days=1)
    written = pg.run(source(emu))
    assert written["engagements"] > 0
    for account in active(emu):
        got = {r[0] for r in pg.sql(f"SELECT sid FROM {{ds}}.engagements WHERE account_sid = '{account}'")}
        assert got >= sids_of(emu, account)
