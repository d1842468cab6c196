"""Erasure of one contact (twilio_studio.erase and `twilio-studio erase`) on DuckDB.

Every row of the contact goes, in every table and version, found by the keyed hash too; nothing else changes; with
Twilio's copies deleted as well, a later load does not bring them back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.kit.duck import Loaded
from tests.kit.scenarios import ERASURE_KEY, WITH_STEPS, contact_with_steps
from tests.kit.studio import ACCOUNT_SID, AUTH_TOKEN, listed, make_source
from twilio_studio.client import RetryPolicy, StudioClient
from twilio_studio.emulator import Dataset, Emulator
from twilio_studio.erase import contact_values, erase_contact


def snapshot(db: str, schema: str) -> dict[str, Counter[tuple[str, ...]]]:
    """Every row of every table of ``schema``, all columns as text (a multiset per table)."""
    out: dict[str, Counter[tuple[str, ...]]] = {}
    with duckdb.connect(db, read_only=True) as con:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]
        ).fetchall()]  # fmt: skip
        for table in tables:
            if table.startswith("_dlt"):
                continue
            rows = con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()
            out[table] = Counter(tuple(str(v) for v in row) for row in rows)
    return out


def cells_with(db: str, needles: list[str]) -> list[str]:
    """``schema.table.column`` of every text or JSON cell, in any schema, that contains a needle."""
    hits = []
    with duckdb.connect(db, read_only=True) as con:
        columns = con.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE data_type IN ('VARCHAR', 'JSON')"
        ).fetchall()
        for schema, table, column in columns:
            for needle in needles:
                found = con.execute(
                    f'SELECT count(*) FROM "{schema}"."{table}" WHERE CAST("{column}" AS VARCHAR) LIKE ?',
                    [f"%{needle}%"],
                ).fetchone()
                if found and found[0]:
                    hits.append(f"{schema}.{table}.{column}")
    return hits


def studio(emu: Emulator) -> StudioClient:
    return StudioClient(emu.base_url, ACCOUNT_SID, AUTH_TOKEN)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("write_mode", "key"),
    [
        pytest.param("merge", None, id="merge"),
        pytest.param("merge", ERASURE_KEY, id="merge_pseudonymized"),
        pytest.param("scd2", None, id="scd2_every_version"),
        pytest.param("append", ERASURE_KEY, id="append_pseudonymized_every_snapshot"),
    ],
)
def test_erase_removes_the_contact_and_nothing_else(loaded: Loaded, write_mode: str, key: str | None) -> None:
    with Emulator(Dataset(seed=21, flows=2, engagements_per_flow=50, long_running_share=0.5)) as emu:
        options: dict[str, Any] = {"write_mode": write_mode, "widget_fields": "all"}
        if key:
            options["pseudonymize_key"] = key
        loaded.run(make_source(emu.base_url, **options).with_resources(*WITH_STEPS))
        first = emu.now()
        emu.advance(hours=30)  # active runs move on: versions and snapshots accumulate
        loaded.run(make_source(emu.base_url, **options).with_resources(*WITH_STEPS))
        address = contact_with_steps(emu, since=first)
    needles = contact_values(address, key)
    assert cells_with(loaded.db, needles[-1:])  # the contact is in the destination, as stored
    before = {s: snapshot(loaded.db, s) for s in ("twilio_studio", "twilio_studio_staging")}

    dry = erase_contact(loaded.pipeline, address, pseudonymize_key=key, dry_run=True)
    assert {s: snapshot(loaded.db, s) for s in before} == before  # a dry run changes nothing
    tables = {name.split(".", 1)[1] for name in dry.rows}
    assert {"engagements", "engagements__widgets", "engagements__flow_data", "engagement_steps",
            "engagement_steps__widgets", "executions", "execution_steps"} <= tables  # fmt: skip
    if write_mode != "merge":  # every version (scd2) or snapshot (append) of the run goes
        assert dry.rows["twilio_studio.engagements"] > len({r.sid for r in dry.runs if r.root == "engagements"})

    done = erase_contact(loaded.pipeline, address, pseudonymize_key=key)
    assert done.rows == dry.rows and not done.dry_run
    assert cells_with(loaded.db, needles) == []  # neither the address nor its hash, anywhere
    for schema, tables_before in before.items():
        after = snapshot(loaded.db, schema)
        for table, rows in tables_before.items():
            removed = rows - after[table]
            assert not after[table] - rows, f"{schema}.{table} gained or changed rows"
            assert sum(removed.values()) == done.rows.get(f"{schema}.{table}", 0), f"{schema}.{table}"
    assert erase_contact(loaded.pipeline, address, pseudonymize_key=key).total == 0  # nothing left


@pytest.mark.slow
def test_erase_in_twilio_keeps_a_later_load_from_bringing_them_back(loaded: Loaded) -> None:
    with Emulator(Dataset(seed=22, flows=2, engagements_per_flow=60, long_running_share=0.6)) as emu:
        loaded.run(make_source(emu.base_url).with_resources(*WITH_STEPS))
        address = contact_with_steps(emu)
        # a run of the contact that Twilio has and the destination not yet
        emu.api.writes.create(emu.dataset.flows[1], address, "+15005550006", {"late": True}, emu.now())
        report = erase_contact(loaded.pipeline, address, twilio=studio(emu))
        assert report.failed_in_twilio == {}
        assert len(report.deleted_in_twilio) == len({r.sid for r in report.runs}) + 1
        emu.advance(days=2)
        loaded.run(make_source(emu.base_url, lookback_seconds=30 * 86400).with_resources(*WITH_STEPS))
        assert cells_with(loaded.db, [address]) == []
        assert loaded.scalar("SELECT count(*) FROM engagements") > 100  # the others still load


def test_erase_reports_what_twilio_refused(loaded: Loaded) -> None:
    with Emulator(Dataset(seed=23, flows=1, engagements_per_flow=40)) as emu:
        loaded.run(make_source(emu.base_url))
        address = contact_with_steps(emu)
        emu.inject("error", times=100, path_contains="/Engagements/")  # every DELETE of it fails with 5xx
        client = StudioClient(
            emu.base_url, ACCOUNT_SID, AUTH_TOKEN, retry=RetryPolicy(max_attempts=2, backoff_base=0.01)
        )
        report = erase_contact(loaded.pipeline, address, twilio=client)
    assert report.failed_in_twilio and all("after 2 attempts" in why for why in report.failed_in_twilio.values())
    assert cells_with(loaded.db, [address]) == []  # the destination's rows went all the same
    assert "could not delete" in report.render()


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "TWILIO_"))} | env
    return subprocess.run(
        [sys.executable, "-m", "twilio_studio.cli", *args], cwd=cwd, env=full_env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_erase_command(tmp_path: Path) -> None:
    with Emulator(Dataset(seed=24, flows=2, engagements_per_flow=40)) as emu:
        env = {
            "SOURCES__TWILIO_STUDIO__ACCOUNT_SID": ACCOUNT_SID,
            "SOURCES__TWILIO_STUDIO__AUTH_TOKEN": AUTH_TOKEN,
            "SOURCES__TWILIO_STUDIO__BASE_URL": emu.base_url,
            "SOURCES__TWILIO_STUDIO__PSEUDONYMIZE_KEY": ERASURE_KEY,
        }
        common = ("--pipelines-dir", str(tmp_path / "p"), "--dataset", "studio")
        run = cli("run", *common, "--resources", "flows,engagements,engagement_steps", cwd=tmp_path, env=env)
        assert run.returncode == 0, run.stderr
        address = contact_with_steps(emu)
        db = str(tmp_path / "twilio_studio_data.duckdb")
        token = contact_values(address, ERASURE_KEY)[1]

        dry = cli("erase", *common, "--contact", address, "--dry-run", "--in-twilio", cwd=tmp_path, env=env)
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.startswith("would remove ") and "studio.engagements " in dry.stdout
        assert "in Twilio: would delete" in dry.stdout and address not in dry.stdout + dry.stderr
        assert cells_with(db, [token])

        real = cli("erase", *common, "--contact", address, "--in-twilio", cwd=tmp_path, env=env)
        assert real.returncode == 0, real.stderr
        assert real.stdout.startswith("removed ") and "in Twilio: deleted" in real.stdout
        assert [line.split()[-1] for line in real.stdout.splitlines() if "studio." in line] == [
            line.split()[-1] for line in dry.stdout.splitlines() if "studio." in line
        ]
        assert cells_with(db, [token, address]) == []
        gone = [script.sid for script in listed(emu) if script.address == address]
        assert gone and all(emu.api.writes.is_deleted(sid) for sid in gone)  # deleted in Twilio

        bad = cli("erase", *common, "--contact", " ", cwd=tmp_path, env=env)
        assert bad.returncode == 2 and bad.stderr.startswith("error: --contact: the contact address is empty")
