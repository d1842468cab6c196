"""Where the report's rows come from: a ``SqlReader`` runs one SQL query and returns all its rows.

``duckdb_reader`` opens a DuckDB file read-only per query; ``dlt_reader`` reads back through a dlt
pipeline's own SQL client, so every SQL destination dlt can query works (a DuckDB file it loads
into is opened read-only as well). A read never creates or changes a file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dlt
import duckdb
from dlt.common.destination import TDestinationReferenceArg

from twilio_studio.duckdb_file import pipeline_duckdb_file

SqlReader = Callable[[str], list[tuple[Any, ...]]]
"""Runs one SQL query and returns all its rows."""


def duckdb_reader(path: str, dataset: str) -> SqlReader:
    """A reader over a DuckDB file, opened read-only per query with ``dataset`` on the search path.

    Args:
        path: The DuckDB database file the pipeline loaded into.
        dataset: The dlt dataset name (a schema in the file), e.g. ``twilio_studio``.

    Returns:
        The reader.

    Raises:
        ValueError: ``path`` does not exist (nothing is created), or (from the reader) the file has no
            schema named ``dataset``.
    """
    if not Path(path).is_file():
        raise ValueError(
            f"no DuckDB file {path}: load it first (twilio-studio run, or your pipeline), or pass the file it loaded"
        )

    def read(sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(path, read_only=True) as con:
            try:
                con.execute(f"SET search_path = {quote_literal(dataset)}")
            except duckdb.CatalogException as e:
                found = con.execute("SELECT DISTINCT schema_name FROM duckdb_schemas() WHERE NOT internal")
                schemas = sorted(str(r[0]) for r in found.fetchall())
                raise ValueError(
                    f"dataset {dataset!r} is not in {path}: pass the dataset_name the pipeline loaded into "
                    f"(the default is 'twilio_studio'); the file has {', '.join(schemas)}"
                ) from e
            return [tuple(row) for row in con.execute(sql).fetchall()]

    return read


def dlt_reader(
    pipeline_name: str,
    destination: TDestinationReferenceArg = None,
    dataset_name: str | None = None,
    pipelines_dir: str | None = None,
) -> SqlReader:
    """A reader through a dlt pipeline's SQL client: any SQL destination dlt can read back.

    Args:
        pipeline_name: The pipeline that loaded the data.
        destination: Its destination: a destination object such as
            ``dlt.destinations.postgres(credentials)``, or a name (``"postgres"``) whose credentials
            dlt finds in its config (``.dlt/secrets.toml`` or env vars); None uses the destination
            saved in the pipeline's local state. A DuckDB file needs ``dlt.destinations.duckdb(path)``:
            by name, dlt opens ``<pipeline_name>.duckdb`` in the working directory.
        dataset_name: Its dataset; None uses the one saved in the pipeline's local state.
        pipelines_dir: Where the pipeline keeps its local state; None is dlt's default.

    Returns:
        The reader; each query opens and closes its own connection. A DuckDB file is read through
        ``duckdb_reader`` (read-only, never created).

    Raises:
        ValueError: the destination is a DuckDB file that does not exist.
    """
    # dlt's own defaults apply where an argument is None (its signature says str, not str | None)
    options: dict[str, Any] = {"pipeline_name": pipeline_name, "destination": destination}
    if dataset_name is not None:
        options["dataset_name"] = dataset_name
    if pipelines_dir is not None:
        options["pipelines_dir"] = pipelines_dir
    pipeline = dlt.pipeline(**options)
    database = pipeline_duckdb_file(pipeline)
    if database is not None:  # dlt's DuckDB client opens the file for writing, and creates it
        return duckdb_reader(database, pipeline.dataset_name)

    def read(sql: str) -> list[tuple[Any, ...]]:
        with pipeline.sql_client() as client:
            rows = client.execute_sql(sql)
        return [tuple(row) for row in rows or []]

    return read


def quote_ident(name: str) -> str:
    """An SQL identifier in double quotes, as both DuckDB and PostgreSQL read it."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """An SQL string literal in single quotes."""
    return "'" + value.replace("'", "''") + "'"
