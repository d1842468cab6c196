"""Airflow, for real: pipelines/twilio_studio_airflow_dag.py run with ``dag.test()``.

Against the emulator into DuckDB: one task per account and resource group; a failing account fails
its own tasks.

Airflow runs in a Python of its own, TWILIO_STUDIO_TEST_AIRFLOW_PYTHON (a virtualenv with
``pip install -e '.[airflow]'``; ``.ci/run`` makes one): dlt probes Airflow in every run wherever it is
installed, so it stays out of the environment of the other tests. Without it this skips on a
developer's machine, and fails under CI=true.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.kit.studio import ACCOUNT_SID, AUTH_TOKEN
from twilio_studio.emulator import Dataset, Emulator, Subaccount

CHILD = Path(__file__).with_name("airflow_child.py")
AIRFLOW_PYTHON = os.environ.get("TWILIO_STUDIO_TEST_AIRFLOW_PYTHON")


@pytest.fixture(autouse=True)
def _require_airflow() -> None:
    if not AIRFLOW_PYTHON:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but TWILIO_STUDIO_TEST_AIRFLOW_PYTHON is not set: .ci/run must make Airflow's venv")
        pytest.skip("set TWILIO_STUDIO_TEST_AIRFLOW_PYTHON to a Python with '.[airflow]' to run the Airflow test")


@pytest.fixture
def emu() -> Iterator[Emulator]:
    subs = Subaccount.generate(2, flows=2, engagements_per_flow=20)
    with Emulator(Dataset(seed=11, flows=2, engagements_per_flow=20), subaccounts=subs) as emulator:
        yield emulator


def test_the_dag_loads_each_account_in_its_own_tasks_and_a_failing_account_fails_alone(
    emu: Emulator, tmp_path: Path
) -> None:
    parent, good, bad = (a.sid for a in emu.accounts.accounts)
    db = tmp_path / "airflow.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "AIRFLOW"))}
    env.update({
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "TWILIO_STUDIO_ACCOUNTS": f"{parent},{good},{bad}",
        "SOURCES__TWILIO_STUDIO__ACCOUNT_SID": ACCOUNT_SID,
        "SOURCES__TWILIO_STUDIO__AUTH_TOKEN": AUTH_TOKEN,
        "SOURCES__TWILIO_STUDIO__BASE_URL": emu.base_url,
        "SOURCES__TWILIO_STUDIO__ACCOUNTS_BASE_URL": emu.base_url,
        "SOURCES__TWILIO_STUDIO__SUBACCOUNT_AUTH_TOKENS": json.dumps({bad: "not-its-token"}),
        "DESTINATION__DUCKDB__CREDENTIALS": str(db),
    })  # fmt: skip
    assert AIRFLOW_PYTHON
    done = subprocess.run([AIRFLOW_PYTHON, str(CHILD)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["state"] == "failed"  # one account did not load
    tasks = result["tasks"]
    for account in (parent, good):
        for resources in ("flows", "engagements"):
            assert tasks[f"twilio_studio.twilio_studio_{account.lower()}-{resources}"] == "success"
    assert tasks[f"twilio_studio.twilio_studio_{bad.lower()}-flows"] == "failed"
    with duckdb.connect(str(db), read_only=True) as con:
        rows = dict(con.execute("SELECT account_sid, count(*) FROM twilio_studio.engagements GROUP BY 1").fetchall())
        states = {r[0] for r in con.execute("SELECT pipeline_name FROM twilio_studio._dlt_pipeline_state").fetchall()}
    assert rows == {parent: 40, good: 40}
    assert states == {f"twilio_studio_{parent.lower()}", f"twilio_studio_{good.lower()}"}  # a state per account
    assert "not-its-token" not in done.stdout + done.stderr
