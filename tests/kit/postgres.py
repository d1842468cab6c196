"""PostgreSQL as the tests load into it: the server named by TWILIO_STUDIO_TEST_POSTGRES.

Set TWILIO_STUDIO_TEST_POSTGRES=postgresql://user:pw@127.0.0.1:5432/db (``.ci/run`` does). Without
it the PostgreSQL tests skip on a developer's machine, and fail under CI=true.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import dlt
import pytest

POSTGRES_URL = os.environ.get("TWILIO_STUDIO_TEST_POSTGRES")


def postgres_url() -> str:
    """The test server's URL; skips the test without one (fails it under CI=true)."""
    if not POSTGRES_URL:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but TWILIO_STUDIO_TEST_POSTGRES is not set: .ci/run must start PostgreSQL")
        pytest.skip("set TWILIO_STUDIO_TEST_POSTGRES to run the PostgreSQL tests")
    return POSTGRES_URL


def postgres_pipeline(tmp_path: Path, prefix: str = "ts", destination_name: str | None = None) -> Any:
    """A pipeline into a dataset of its own (``<prefix>_<random>``); drop it with ``drop_dataset``.

    ``destination_name`` names the destination as a user's dlt config may (dlt's default: ``postgres``).
    """
    dataset = f"{prefix}_{uuid.uuid4().hex[:10]}"
    named: dict[str, Any] = {"destination_name": destination_name} if destination_name else {}
    return dlt.pipeline(
        pipeline_name=f"pg_{dataset}",
        destination=dlt.destinations.postgres(credentials=postgres_url(), **named),
        dataset_name=dataset,
        pipelines_dir=str(tmp_path / "pg_pipelines"),
    )


def drop_dataset(pipeline: Any) -> None:
    """Drops the pipeline's dataset and its staging dataset."""
    with pipeline.sql_client() as client:
        for schema in (pipeline.dataset_name, f"{pipeline.dataset_name}_staging"):
            client.execute_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class PgLoaded:
    """A pipeline loading into its own PostgreSQL dataset, with a query helper (``{ds}`` is the dataset)."""

    def __init__(self, tmp_path: Path, destination_name: str | None = None) -> None:
        self.pipeline = postgres_pipeline(tmp_path, destination_name=destination_name)
        self.dataset = self.pipeline.dataset_name
        self._client: Any = None  # one connection for all of a test's queries (see sql)

    def run(self, source: Any) -> dict[str, int]:
        """Runs the pipeline with dlt's defaults, as a library user runs it; the rows written per table."""
        self.pipeline.run(source)
        counts = self.pipeline.last_trace.last_normalize_info.row_counts
        return {k: v for k, v in counts.items() if not k.startswith("_dlt")}

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        """The rows of ``query`` with ``{ds}`` replaced by the dataset's name.

        On one dlt SQL client kept open until ``drop`` (autocommit: each query sees what is committed), so
        that a test reading every column does not open a PostgreSQL connection per query.
        """
        if self._client is None:
            client = self.pipeline.sql_client()
            client.open_connection()
            self._client = client
        return [tuple(r) for r in self._client.execute_sql(query.replace("{ds}", self.dataset)) or []]

    def drop(self) -> None:
        """Closes the query connection, then drops the dataset (and its staging dataset)."""
        if self._client is not None:
            self._client.close_connection()
            self._client = None
        drop_dataset(self.pipeline)
