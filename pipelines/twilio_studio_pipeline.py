"""Loads Twilio Studio flows and engagements into DuckDB (or the destination named on the command line).

    python pipelines/twilio_studio_pipeline.py [destination]

Credentials come from .dlt/secrets.toml or SOURCES__TWILIO_STUDIO__* env vars; see README.
"""

from __future__ import annotations

import sys
from typing import Any

import dlt

from twilio_studio import run_lock, twilio_studio_source

DUCKDB_FILE = "twilio_studio_data.duckdb"  # not dlt's default twilio_studio.duckdb: named like the dataset


def load(destination: str = "duckdb") -> None:
    """Loads every flow into ``destination`` (DuckDB by default) under the run lock; prints the load info."""
    target: Any = dlt.destinations.duckdb(DUCKDB_FILE) if destination == "duckdb" else destination
    pipeline = dlt.pipeline(pipeline_name="twilio_studio", destination=target, dataset_name="twilio_studio")
    with run_lock(pipeline):  # a second run of this pipeline raises RunInProgressError before any request
        info = pipeline.run(twilio_studio_source())
    print(info)


if __name__ == "__main__":
    load(*sys.argv[1:2])
