"""The DuckDB file stays open through the load step (one checkpoint, not one per job), for both paths.

dlt's loader closes its connection after each load job; without a connection held beside it, the
database closes with it and DuckDB checkpoints its WAL into the file at every job (see
``duckdb_file.hold_through_load``). Observed from the file system: after a job's connection closes,
its WAL is still there while the database is held; after the run, the file is closed (DuckDB takes a
connection with other config only to a file no connection in the process holds) and the WAL is gone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from tests.kit.studio import EmulatorFactory, make_source
from twilio_studio import duckdb_file
from twilio_studio.cli import run_pipeline


def wal_after_each_close(monkeypatch: pytest.MonkeyPatch, database: Path) -> list[bool]:
    """For each close of a dlt pool's connection: whether the file's WAL exists right after it."""
    from dlt.destinations.impl.duckdb.configuration import DuckDbConnectionPool

    seen: list[bool] = []
    original = DuckDbConnectionPool._close_conn

    def spy(self: DuckDbConnectionPool) -> None:
        original(self)
        seen.append(Path(f"{database}.wal").exists())

    monkeypatch.setattr(DuckDbConnectionPool, "_close_conn", spy)
    return seen


def held_connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What each hold of the run opened beside dlt's connection (None: nothing held)."""
    opened: list[Any] = []
    connect = duckdb_file._connect_like_dlt

    def spy(p: Any) -> Any:
        opened.append(connect(p))
        return opened[-1]

    monkeypatch.setattr(duckdb_file, "_connect_like_dlt", spy)
    return opened


def test_closed_tells_an_open_file(tmp_path: Path) -> None:
    database = tmp_path / "open.duckdb"
    connection = duckdb.connect(str(database))
    assert not closed(database)
    connection.close()
    assert closed(database)


def closed(database: Path) -> bool:
    """Whether no connection of this process holds the file open (DuckDB refuses other config then)."""
    try:
        duckdb.connect(str(database), config={"custom_user_agent": "twilio-studio-test"}).close()
    except duckdb.ConnectionException:
        return False
    return True


@pytest.mark.parametrize(
    ("path", "destination_name"),
    [("library", None), ("cli", None), ("library", "local")],
    ids=["library", "cli", "library_named_destination"],
)
def test_the_load_step_checkpoints_once_and_closes_the_file(
    emulator_factory: EmulatorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    destination_name: str | None,
) -> None:
    emu = emulator_factory(flows=2, engagements=30)
    database = tmp_path / "held.duckdb"
    named: dict[str, Any] = {"destination_name": destination_name} if destination_name else {}
    destination = dlt.destinations.duckdb(str(database), **named)
    pipeline = dlt.pipeline("held", pipelines_dir=str(tmp_path / "p"), destination=destination)
    seen = wal_after_each_close(monkeypatch, database)
    if path == "library":
        pipeline.run(make_source(emu.base_url))  # README's Python example: dlt's defaults
    else:
        run_pipeline(pipeline, make_source(emu.base_url))  # what `twilio-studio run` calls
    info = pipeline.last_trace.last_load_info if pipeline.last_trace is not None else None
    assert info is not None
    jobs = len(info.load_packages[0].jobs["completed_jobs"])
    assert jobs >= 5
    # dlt closed a connection after each job, and the database stayed open (its WAL not yet checkpointed)
    assert len(seen) >= jobs and sum(seen) >= jobs - 1, seen
    assert duckdb_file._held == {} and id(pipeline) not in duckdb_file._registered
    assert not Path(f"{database}.wal").exists()  # checkpointed once, when the step ended
    assert closed(database)
    with pipeline.sql_client() as client:
        rows = client.execute_sql("SELECT count(*) FROM engagements")
    assert rows == [(60,)]


def test_a_failed_load_step_closes_the_file_too(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlt.destinations.impl.duckdb.duck import DuckDbCopyJob

    emu = emulator_factory(flows=1, engagements=10)
    database = tmp_path / "failed.duckdb"
    pipeline = dlt.pipeline(
        "failed", pipelines_dir=str(tmp_path / "p"), destination=dlt.destinations.duckdb(str(database))
    )
    original = DuckDbCopyJob.run

    def run(self: DuckDbCopyJob) -> None:
        if self.load_table_name == "engagements":
            raise RuntimeError("the disk is full")
        original(self)

    monkeypatch.setattr(DuckDbCopyJob, "run", run)
    monkeypatch.setenv("LOAD__RAISE_ON_MAX_RETRIES", "1")
    opened = held_connections(monkeypatch)
    with pytest.raises(PipelineStepFailed):
        pipeline.run(make_source(emu.base_url))
    assert len(opened) == 1 and opened[0] is not None  # held during the step that failed
    assert duckdb_file._held == {} and id(pipeline) not in duckdb_file._registered
    assert closed(database)


def test_a_connection_the_user_passed_is_theirs(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulator_factory(flows=1, engagements=10)
    connection = duckdb.connect(str(tmp_path / "theirs.duckdb"))
    opened = held_connections(monkeypatch)
    pipeline = dlt.pipeline(
        "theirs",
        pipelines_dir=str(tmp_path / "p"),
        destination=dlt.destinations.duckdb(connection),
        dataset_name="studio",
    )
    pipeline.run(make_source(emu.base_url))
    assert opened == [None]  # nothing held beside the user's connection: dlt never closes that one
    assert connection.execute("SELECT count(*) FROM studio.engagements").fetchall() == [(10,)]
    connection.close()


def test_credentials_with_statements_are_loaded_as_dlt_loads_them(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

    emu = emulator_factory(flows=1, engagements=10)
    database = tmp_path / "attached.duckdb"
    # dlt runs statements on every connection it opens: an ATTACH fails on a database still open
    credentials = DuckDbCredentials(str(database), statements=["ATTACH ':memory:' AS scratch"])
    pipeline = dlt.pipeline(
        "attached", pipelines_dir=str(tmp_path / "p"), destination=dlt.destinations.duckdb(credentials)
    )
    opened = held_connections(monkeypatch)
    pipeline.run(make_source(emu.base_url))
    assert opened == [None]
    with pipeline.sql_client() as client:
        assert client.execute_sql("SELECT count(*) FROM engagements") == [(10,)]
