"""What `twilio-studio run` asks of DuckDB for a run: a memory cap, one load job at a time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dlt
import pytest

from twilio_studio.cli import DUCKDB_CONFIG_VAR, LOAD_WORKERS_VAR, bounded_duckdb


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DUCKDB_CONFIG_VAR, raising=False)
    monkeypatch.delenv(LOAD_WORKERS_VAR, raising=False)


def test_duckdb_gets_the_cap_during_the_run_and_the_environment_is_restored(tmp_path: Path) -> None:
    pipeline = dlt.pipeline(
        "bounded", pipelines_dir=str(tmp_path / "p"), destination=dlt.destinations.duckdb(str(tmp_path / "b.duckdb"))
    )
    with bounded_duckdb("duckdb"):
        assert os.environ[LOAD_WORKERS_VAR] == "1"
        with pipeline.sql_client() as client:  # a connection as dlt's load step opens it
            (limit,) = client.execute_sql("SELECT current_setting('memory_limit')")[0]
            (ordered,) = client.execute_sql("SELECT current_setting('preserve_insertion_order')")[0]
            (threads,) = client.execute_sql("SELECT current_setting('threads')")[0]
    assert limit in ("122.0 MiB", "128.0 MB")  # DuckDB shows the cap in binary units
    assert ordered is False and threads == 1
    assert DUCKDB_CONFIG_VAR not in os.environ and LOAD_WORKERS_VAR not in os.environ


def test_what_the_user_configured_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    mine = json.dumps({"memory_limit": "2GB"})
    monkeypatch.setenv(DUCKDB_CONFIG_VAR, mine)
    monkeypatch.setenv(LOAD_WORKERS_VAR, "4")
    with bounded_duckdb("duckdb"):
        assert os.environ[DUCKDB_CONFIG_VAR] == mine
        assert os.environ[LOAD_WORKERS_VAR] == "4"
    assert os.environ[DUCKDB_CONFIG_VAR] == mine and os.environ[LOAD_WORKERS_VAR] == "4"


def test_other_destinations_are_left_alone() -> None:
    with bounded_duckdb("postgres"):
        assert DUCKDB_CONFIG_VAR not in os.environ and LOAD_WORKERS_VAR not in os.environ
