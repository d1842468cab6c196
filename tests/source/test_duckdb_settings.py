"""The DuckDB destination's load settings: the same cap for pipeline.run(source) and the CLI, never over the user's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dlt
import pytest

from tests.kit.studio import EmulatorFactory, make_source
from twilio_studio.emulator import Emulator
from twilio_studio.memory import DUCKDB_GLOBAL_CONFIG, DUCKDB_MERGE_SETTINGS, DUCKDB_SETTINGS, LOAD_WORKERS

ENV = "DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG"


def settings_seen_by_the_load(tmp_path: Path, emu: Emulator, destination_name: str | None = None) -> dict[str, str]:
    """The memory_limit and preserve_insertion_order of the load step's DuckDB connection.

    Read from DuckDB itself, on the last connection ``pipeline.run`` opened.
    """
    from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient

    seen: list[dict[str, str]] = []
    original = DuckDbSqlClient.open_connection

    def spy(self: DuckDbSqlClient) -> Any:
        conn = original(self)
        seen.append(
            {
                name: str(conn.execute(f"SELECT current_setting('{name}')").fetchall()[0][0]).lower()
                for name in ("memory_limit", "preserve_insertion_order")
            }
        )
        return conn

    named: dict[str, Any] = {"destination_name": destination_name} if destination_name else {}
    destination = dlt.destinations.duckdb(str(tmp_path / "s.duckdb"), **named)
    pipeline = dlt.pipeline("settings", pipelines_dir=str(tmp_path / "p"), destination=destination)
    DuckDbSqlClient.open_connection = spy  # type: ignore[method-assign]
    try:
        pipeline.run(make_source(emu.base_url))
    finally:
        DuckDbSqlClient.open_connection = original  # type: ignore[method-assign]
    return seen[-1]


def test_the_library_path_loads_with_the_cap_and_gives_it_back(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    emu = emulator_factory(flows=1, engagements=20)
    pipeline = dlt.pipeline(
        "capped", pipelines_dir=str(tmp_path / "p"), destination=dlt.destinations.duckdb(str(tmp_path / "c.duckdb"))
    )
    pipeline.run(make_source(emu.base_url))  # dlt's defaults, as README's Python example
    assert dlt.secrets.get(DUCKDB_GLOBAL_CONFIG) is None, "the cap must end with the run"
    with pipeline.sql_client() as client:  # a connection after the run: DuckDB's defaults again
        rows = client.execute_sql("SELECT current_setting('memory_limit')")
    assert rows is not None
    (limit,) = rows[0]
    assert limit not in ("183.1 MiB", "488.2 MiB")


def test_the_load_step_gets_the_cap(emulator_factory: EmulatorFactory, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv(ENV, raising=False)
    emu = emulator_factory(flows=1, engagements=20)
    seen = settings_seen_by_the_load(tmp_path, emu)
    assert seen == {"memory_limit": "183.1 mib", "preserve_insertion_order": "false"}
    assert DUCKDB_SETTINGS["memory_limit"] == "192MB"  # 192 MB is 183.1 MiB (a first load only appends)


def test_a_duckdb_destination_named_otherwise_gets_the_cap_in_its_own_section(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dlt reads a destination named "local" from destination.local.*: the cap must be set there
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("DESTINATION__LOCAL__CREDENTIALS__GLOBAL_CONFIG", raising=False)
    emu = emulator_factory(flows=1, engagements=20)
    seen = settings_seen_by_the_load(tmp_path, emu, destination_name="local")
    assert seen == {"memory_limit": "183.1 mib", "preserve_insertion_order": "false"}
    assert dlt.secrets.get("destination.local.credentials.global_config") is None, "the cap must end with the run"


def test_a_value_the_user_configured_for_a_named_duckdb_destination_wins(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("DESTINATION__LOCAL__CREDENTIALS__GLOBAL_CONFIG", json.dumps({"memory_limit": "1GB"}))
    emu = emulator_factory(flows=1, engagements=20)
    seen = settings_seen_by_the_load(tmp_path, emu, destination_name="local")
    assert seen == {"memory_limit": "953.6 mib", "preserve_insertion_order": "true"}


def test_a_run_that_merges_gets_more_room(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    emu = emulator_factory(flows=1, engagements=20)
    settings_seen_by_the_load(tmp_path, emu)  # the first load appends
    emu.advance(days=1)
    seen = settings_seen_by_the_load(tmp_path, emu)  # the same pipeline and file: a merge
    assert seen == {"memory_limit": "488.2 mib", "preserve_insertion_order": "false"}
    assert DUCKDB_MERGE_SETTINGS["memory_limit"] == "512MB"


def test_a_value_the_user_configured_wins(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, json.dumps({"memory_limit": "1GB"}))
    emu = emulator_factory(flows=1, engagements=20)
    seen = settings_seen_by_the_load(tmp_path, emu)
    assert seen == {"memory_limit": "953.6 mib", "preserve_insertion_order": "true"}


def test_duckdb_loads_one_job_at_a_time_unless_the_user_says_otherwise(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlt.load.load import Load

    workers: list[int] = []
    original = Load.__init__

    def spy(self: Load, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        workers.append(self.config.workers)

    monkeypatch.setattr(Load, "__init__", spy)
    monkeypatch.delenv("LOAD__WORKERS", raising=False)
    emu = emulator_factory(flows=1, engagements=20)
    settings_seen_by_the_load(tmp_path / "ours", emu)
    assert workers == [1] and dlt.config.get(LOAD_WORKERS) is None  # taken back with the run
    monkeypatch.setenv("LOAD__WORKERS", "3")
    settings_seen_by_the_load(tmp_path / "theirs", emu)
    assert workers == [1, 3]


def test_freed_memory_goes_back_before_the_load_step_of_any_destination(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlt.load.load import Load

    import twilio_studio.memory as memory

    events: list[str] = []
    release = memory.release_freed_memory

    def counted_release() -> None:
        events.append("release")
        release()

    monkeypatch.setattr(memory, "release_freed_memory", counted_release)
    run = Load.run

    def loading(self: Load, *args: Any, **kwargs: Any) -> Any:
        events.append("load")
        return run(self, *args, **kwargs)

    monkeypatch.setattr(Load, "run", loading)
    emu = emulator_factory(flows=1, engagements=20)
    pipeline = dlt.pipeline("freed", pipelines_dir=str(tmp_path / "p"), destination=dlt.destinations.filesystem(
        str(tmp_path / "files")))  # fmt: skip
    source = make_source(emu.base_url).with_resources("flows", "engagements", "executions")  # two walks
    pipeline.run(source, loader_file_format="parquet")
    # the hook ran once, when dlt started the load step, before the loader
    assert events[:2] == ["release", "load"] and events.count("release") == 1
