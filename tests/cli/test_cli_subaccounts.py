"""``twilio-studio run --subaccounts all`` and ``--subaccount AC...``, run as a user runs them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.kit.cli import cli, creds
from twilio_studio.emulator import Dataset, Emulator, Subaccount


@pytest.fixture
def emu() -> Iterator[Emulator]:
    subs = Subaccount.generate(3, flows=1, engagements_per_flow=20, statuses={2: "suspended"})
    with Emulator(Dataset(seed=11, flows=1, engagements_per_flow=20), subaccounts=subs) as emulator:
        yield emulator


def env(emu: Emulator, **extra: str) -> dict[str, str]:
    return {**creds(emu), "SOURCES__TWILIO_STUDIO__ACCOUNTS_BASE_URL": emu.base_url, **extra}


# an account's line of the summary: its engagements, its flow's revisions, states and transitions, the flow
PER_ACCOUNT = r"20 engagements, \d+ flow_revisions, \d+ flow_states, \d+ flow_transitions, 1 flows\n"


def test_all_subaccounts_load_and_the_summary_counts_per_account(emu: Emulator, tmp_path: Path) -> None:
    done = cli("run", "--subaccounts", "all", "--pipeline-name", "subs", "--pipelines-dir", str(tmp_path / "p"),
               cwd=tmp_path, env=env(emu))  # fmt: skip
    assert done.returncode == 0, done.stderr
    accounts = emu.accounts.accounts
    for a in accounts[:3]:
        # each account's rows: engagements, its flow's revisions, states and transitions, the flow
        assert re.search(rf"  {a.sid}  {PER_ACCOUNT}", done.stdout), done.stdout
    assert f"  {accounts[3].sid}  skipped: its status is suspended" in done.stdout
    with duckdb.connect(str(tmp_path / "subs_data.duckdb"), read_only=True) as con:
        got = dict(con.execute("SELECT account_sid, count(*) FROM twilio_studio.engagements GROUP BY 1").fetchall())
    assert got == {a.sid: 20 for a in accounts[:3]}
    for a in accounts:
        assert a.auth_token not in done.stdout + done.stderr


def test_a_failed_account_makes_the_run_exit_non_zero_with_one_line_for_it(emu: Emulator, tmp_path: Path) -> None:
    ok, wrong, suspended = (a.sid for a in emu.accounts.accounts[1:4])
    tokens = json.dumps({wrong: "not-its-token"})
    args = ["run", "--pipeline-name", "subs", "--pipelines-dir", str(tmp_path / "p")]
    for sid in (ok, wrong, suspended):
        args += ["--subaccount", sid]
    done = cli(*args, cwd=tmp_path, env=env(emu, SOURCES__TWILIO_STUDIO__SUBACCOUNT_AUTH_TOKENS=tokens))
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: account ")]
    assert len(lines) == 2
    assert any(line.startswith(f"error: account {wrong} did not load:") and "HTTP 401" in line for line in lines)
    assert any(line.startswith(f"error: account {suspended} did not load: its status is suspended") for line in lines)
    assert re.search(rf"  {ok}  {PER_ACCOUNT}", done.stdout), done.stdout
    assert "not-its-token" not in done.stdout + done.stderr


def test_subaccounts_all_and_a_list_go_not_together(emu: Emulator, tmp_path: Path) -> None:
    done = cli("run", "--subaccounts", "all", "--subaccount", "AC" + "1" * 32, cwd=tmp_path, env=env(emu))
    assert done.returncode == 2 and "--subaccounts all and --subaccount go not together" in done.stderr
    assert emu.stats.requests == 0
