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

from pathlib import Path
from typing import Any

from twilio_studio.client import ConfigurationError

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
