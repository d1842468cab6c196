"""DuckDB as the tests load into it: one pipeline builder, and a pipeline with a query helper."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dlt
import duckdb

DATASET = "twilio_studio"


def duckdb_pipeline(tmp: Path, name: str = "studio", db_file: str | None = None) -> Any:
    """A pipeline into ``tmp/<db_file or name.duckdb>``, dataset ``twilio_studio``, its state in ``tmp/pipelines``.

    Every test pipeline is built here: its own file and pipelines_dir under the test's temp dir,
    never ~/.dlt or the working directory.
    """
    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(tmp / (db_file or f"{name}.duckdb"))),
        dataset_name=DATASET,
        pipelines_dir=str(tmp / "pipelines"),
    )


def query(db: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` on the DuckDB file ``db``, opened read-only."""
    with duckdb.connect(db, read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


class Loaded:
    """A pipeline loading into a DuckDB file, with a query helper."""

    def __init__(self, tmp_path: Path, name: str = "studio") -> None:
        self.db = str(tmp_path / f"{name}.duckdb")
        self.pipeline = duckdb_pipeline(tmp_path, name)

    def run(self, source: Any) -> dict[str, int]:
        """Runs the pipeline; returns the rows written per table in this run."""
        self.pipeline.run(source, loader_file_format="parquet")
        counts = self.pipeline.last_trace.last_normalize_info.row_counts
        return {k: v for k, v in counts.items() if not k.startswith("_dlt")}

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """The rows of ``query``, with the dataset as the search path."""
        with duckdb.connect(self.db, read_only=True) as con:
            con.execute(f"SET search_path = '{DATASET}'")
            return con.execute(query, list(params)).fetchall()

    def scalar(self, query: str, *params: Any) -> Any:
        """The first value of the first row of ``query``."""
        return self.sql(query, *params)[0][0]
