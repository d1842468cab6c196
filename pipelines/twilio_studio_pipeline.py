"""Loads Twilio Studio flows and engagements into DuckDB (or the destination named on the command line).

    python pipelines/twilio_studio_pipeline.py [destination]

Credentials come from .dlt/secrets.toml or SOURCES__TWILIO_STUDIO__* env vars; see README.
"""

from __future__ import annotations

import sys

import dlt

from twilio_studio import twilio_studio_source
from twilio_studio.columnar import loader_file_format


def load(destination: str = "duckdb") -> None:
    pipeline = dlt.pipeline(pipeline_name="twilio_studio", destination=destination, dataset_name="twilio_studio")
    info = pipeline.run(twilio_studio_source(), loader_file_format=loader_file_format(destination))
    print(info)


if __name__ == "__main__":
    load(*sys.argv[1:2])
