"""Dagster, for real and in process: the assets materialize per account partition.

Against the emulator into DuckDB; partitions run at once keep their own state; a failing partition
fails alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import dlt
import duckdb
import pytest
from dagster_dlt import DagsterDltResource

from tests.kit.duck import Loaded
from tests.kit.studio import ACCOUNT_SID, AUTH_TOKEN, make_source
from twilio_studio.dagster import twilio_studio_assets
from twilio_studio.emulator import Dataset, Emulator, Faults, Subaccount

TABLES = ("flows", "engagements", "engagements__widgets", "engagements__flow_data")


@pytest.fixture
def emu() -> Iterator[Emulator]:
    subs = Subaccount.generate(3, flows=2, engagements_per_flow=30, statuses={2: "suspended"})
    faults = Faults(latency=0.005)  # requests of both partitions overlap
    with Emulator(Dataset(seed=11, flows=2, engagements_per_flow=30), subaccounts=subs, faults=faults) as emulator:
        yield emulator


def options(emu: Emulator, **extra: Any) -> dict[str, Any]:
    return {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "base_url": emu.base_url,
            "accounts_base_url": emu.base_url, **extra}  # fmt: skip


def assets_for(emu: Emulator, tmp_path: Path, **kwargs: Any) -> dg.AssetsDefinition:
    kwargs.setdefault("source_options", options(emu))
    return twilio_studio_assets(
        destination=dlt.destinations.duckdb(str(tmp_path / "dagster.duckdb")),
        pipelines_dir=str(tmp_path / "pipelines"),
        **kwargs,
    )


def materialize_at_once(assets: dg.AssetsDefinition, keys: list[str]) -> dict[str, dg.ExecuteInProcessResult]:
    """Each partition in its own thread, started together."""
    results: dict[str, dg.ExecuteInProcessResult] = {}
    start = threading.Barrier(len(keys))

    def run(key: str) -> None:
        start.wait()
        results[key] = dg.materialize(
            [assets], partition_key=key, resources={"dlt": DagsterDltResource()}, raise_on_error=False
        )

    threads = [threading.Thread(target=run, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results


def counts(db: Path, table: str, dataset: str = "twilio_studio") -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        return dict(con.execute(f"SELECT account_sid, count(*) FROM {dataset}.{table} GROUP BY 1").fetchall())


def cursors(tmp_path: Path, account: str) -> dict[str, Any]:
    pipeline = dlt.pipeline(f"twilio_studio_{account.lower()}", pipelines_dir=str(tmp_path / "pipelines"))
    resources = pipeline.state["sources"]["twilio_studio"]["resources"]["engagements"]
    flows = dict(resources.get("flows", {}))
    for place in resources.get("accounts", {}).values():
        flows.update(place["flows"])
    return flows


def flow_sids(emu: Emulator, account: str) -> set[str]:
    return {f.sid for f in emu.accounts.datasets[account].flows}


def test_one_partition_per_active_account_from_the_accounts_list_or_given(emu: Emulator, tmp_path: Path) -> None:
    listed = assets_for(emu, tmp_path)
    active = sorted(a.sid for a in emu.accounts.accounts if a.status == "active")
    assert listed.partitions_def is not None and listed.partitions_def.get_partition_keys() == active
    assert {k.to_user_string() for k in listed.keys} == {"dlt_twilio_studio_flows", "dlt_twilio_studio_engagements"}
    given = assets_for(emu, tmp_path / "given", accounts=[active[1]])
    assert given.partitions_def is not None and given.partitions_def.get_partition_keys() == [active[1]]


def test_two_partitions_at_once_keep_their_own_state_and_load_what_a_plain_run_loads(
    emu: Emulator, tmp_path: Path
) -> None:
    assets = assets_for(emu, tmp_path)
    keys = [ACCOUNT_SID, emu.accounts.accounts[1].sid]
    results = materialize_at_once(assets, keys)
    assert all(results[k].success for k in keys)
    for key in keys:  # each partition's pipeline has the cursors of its own account's flows only
        assert set(cursors(tmp_path, key)) == flow_sids(emu, key)
    plain = Loaded(tmp_path / "plain")
    plain.run(make_source(emu.base_url, accounts_base_url=emu.base_url, subaccounts=keys))
    for table in TABLES:
        expected = dict(plain.sql(f"SELECT account_sid, count(*) FROM {table} GROUP BY 1"))
        assert counts(tmp_path / "dagster.duckdb", table) == expected, table
    # a rerun of one partition moves only its own cursors
    other_before = cursors(tmp_path, keys[1])
    emu.advance(hours=12)
    again = materialize_at_once(assets, [keys[0]])
    assert again[keys[0]].success
    assert cursors(tmp_path, keys[1]) == other_before
    assert counts(tmp_path / "dagster.duckdb", "engagements")[keys[0]] > expected_rows(plain, keys[0])


def expected_rows(plain: Loaded, account: str) -> int:
    return int(plain.scalar("SELECT count(*) FROM engagements WHERE account_sid = ?", account))


def test_a_failing_partition_fails_alone(emu: Emulator, tmp_path: Path) -> None:
    good, bad = emu.accounts.accounts[1].sid, emu.accounts.accounts[2].sid
    assets = assets_for(emu, tmp_path, source_options=options(emu, subaccount_auth_tokens={bad: "not-its-token"}))
    results = materialize_at_once(assets, [good, bad])
    assert results[good].success and not results[bad].success
    failure = next(e for e in results[bad].all_events if e.event_type_value == "STEP_FAILURE")
    assert f"account {bad} did not load" in str(failure.event_specific_data)
    assert "HTTP 401" in str(failure.event_specific_data)
    assert "not-its-token" not in str(failure.event_specific_data)
    assert set(counts(tmp_path / "dagster.duckdb", "engagements")) == {good}
    assert set(cursors(tmp_path, good)) == flow_sids(emu, good)
