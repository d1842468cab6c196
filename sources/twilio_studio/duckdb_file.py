"""The DuckDB file a pipeline loads into, and the one name it must not share with the dataset.

DuckDB names a database file's catalog after the file (``twilio_studio.duckdb`` is catalog
``twilio_studio``), and dlt's dataset is a schema in it. When the two names are equal,
``twilio_studio.engagements`` can mean either: DuckDB 2 refuses such queries ("Binder Error:
Ambiguous reference to catalog or schema"), dlt's own included, and a pipeline whose file is named
like its dataset fails at its first load and at every run after. dlt's default file is
``<pipeline_name>.duckdb``, so the default pipeline and dataset name ``twilio_studio`` clash: the CLI
loads into ``<pipeline_name>_data.duckdb`` instead, and the source refuses a clash before any request.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from twilio_studio.client import ConfigurationError
from twilio_studio.destinations import destination_kind

DEFAULT_FILE_SUFFIX = "_data.duckdb"


def default_duckdb_file(pipeline_name: str) -> str:
    """The CLI's DuckDB file name for a pipeline: ``<pipeline_name>_data.duckdb``."""
    return f"{pipeline_name}{DEFAULT_FILE_SUFFIX}"


def legacy_duckdb_file(pipeline_name: str) -> str:
    """The default DuckDB file name of dlt, which earlier versions of the CLI loaded into."""
    return f"{pipeline_name}.duckdb"


def catalog_name(database: str) -> str:
    """The catalog DuckDB gives a database file: its name without the extension."""
    return Path(database).stem


def clash(database: str, dataset: str) -> bool:
    """Whether a DuckDB file's catalog and a dataset share a name (DuckDB compares them case-blind)."""
    return catalog_name(database).casefold() == dataset.casefold()


def check_names(database: str, dataset: str, fix: str) -> None:
    """Raises ConfigurationError when the file's catalog and the dataset share a name.

    Args:
        database: The DuckDB file.
        dataset: The dataset (schema) dlt loads into.
        fix: What the user should change, in their terms (CLI options or Python arguments).
    """
    if clash(database, dataset):
        raise ConfigurationError(
            f"the DuckDB file {Path(database).name} and the dataset {dataset} share the name "
            f"{catalog_name(database)}, so DuckDB cannot tell the file's catalog from the dataset's "
            f'schema (DuckDB 2: "Ambiguous reference to catalog or schema"): {fix}'
        )


def pipeline_duckdb_file(pipeline: Any) -> str | None:
    """The DuckDB file a dlt pipeline loads into, None when its destination is not a DuckDB file.

    Resolves the destination's configuration (explicit credentials, ``.dlt`` files, env vars) the
    way the load step will; nothing is opened or created.
    """
    destination = getattr(pipeline, "destination", None)
    if destination is None or not str(getattr(destination, "destination_type", "")).endswith(".duckdb"):
        return None
    try:
        database = pipeline.destination_client().config.credentials.database
    except Exception:  # unresolvable config: the load step reports it in dlt's words
        return None
    return database if isinstance(database, str) and database not in (":memory:", ":pipeline:") else None


def check_pipeline(pipeline: Any) -> None:
    """Raises ConfigurationError when a pipeline's DuckDB file is named like its dataset."""
    database = pipeline_duckdb_file(pipeline)
    if database is not None and pipeline.dataset_name:
        check_names(
            database,
            pipeline.dataset_name,
            f"load into a file with another name, e.g. dlt.destinations.duckdb("
            f"'{default_duckdb_file(catalog_name(database))}'), or choose another dataset_name",
        )


# dlt's loader borrows a connection from its pool for each load job and closes it after the job; the
# last close of a database makes DuckDB write a checkpoint and the next job opens the file again. A full
# load into DuckDB is ~13 such opens and checkpoints (1.8 s of a 4.1 s load step at 20,000 engagements,
# BENCHMARKS.md). With one more connection open from the start of the load step to its end, the
# database stays open between jobs (DuckDB keeps one instance per file in a process): dlt's closes
# return at once, and the WAL is checkpointed once when the step ends (or when it passes DuckDB's
# checkpoint_threshold). Every commit is in the WAL either way: a kill loses nothing that was loaded.
_held: dict[int, Any] = {}  # per pipeline: the connection held through its load step
_registered: set[int] = set()  # pipelines whose current run will hold
_lock = threading.Lock()  # resources of one run may register at once (dlt's parallel extract)


def hold_through_load(pipeline: Any) -> None:
    """Keeps the pipeline's DuckDB file open through its load step (see ``_held``); once per run.

    Not for a connection the caller passed (dlt never closes that one), a read-only or in-memory
    database, credentials with ``statements`` (dlt runs them on every connection it opens, and an
    ``ATTACH`` fails on a database still open), or an untraced pipeline (no step to hook).
    """
    from twilio_studio.runhooks import after_step, at_end_of_run, before_step, traced

    key = id(pipeline)
    destination = getattr(pipeline, "destination", None)
    if not traced(pipeline) or destination_kind(destination) != "duckdb":
        return
    with _lock:
        if key in _registered:
            return
        _registered.add(key)

    def hold() -> None:
        if key in _held:
            return
        connection = _connect_like_dlt(pipeline)
        if connection is not None:
            _held[key] = connection

    def release() -> None:
        connection = _held.pop(key, None)
        if connection is not None:
            connection.close()  # the step's one checkpoint, when nothing else holds the file

    def forget() -> None:
        release()
        with _lock:
            _registered.discard(key)

    before_step(pipeline, "load", hold)
    after_step(pipeline, "load", release)
    at_end_of_run(pipeline, forget)


def _connect_like_dlt(pipeline: Any) -> Any:
    """A connection to the file the load step will open, opened the way dlt's pool opens it; or None.

    The same path, read-write, and the same connect-time config (DuckDB refuses a second connection
    to an open file with other config). Nothing is held where the load step would do anything else.
    """
    try:
        credentials = pipeline.destination_client().config.credentials
        if credentials.external_conn() is not None or credentials.read_only or credentials.statements:
            return None  # statements (ATTACH, CREATE SECRET) run on each connection dlt opens: once per database
        database = credentials._conn_str()  # what dlt's pool passes to duckdb.connect
    except Exception:  # unresolvable config: the load step reports it in dlt's words
        return None
    if not isinstance(database, str) or not database or database.startswith(":memory:") or ":" in Path(database).name:
        return None  # in memory, or a URI (md:, motherduck:) that is not a local file
    connect_config = {k: v for k, v in (credentials.global_config or {}).items() if k in ("custom_user_agent",)}
    import duckdb

    try:
        return duckdb.connect(database=database, read_only=False, config=connect_config)
    except Exception:  # e.g. locked by another process: the load step's own connect says so
        return None
