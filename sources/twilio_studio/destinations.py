"""What kind of database a pipeline loads into, whatever name the user gave its destination."""

from __future__ import annotations

from typing import Any


def destination_kind(destination: Any) -> str | None:
    """``"duckdb"``, ``"postgres"``, ...: the last part of dlt's ``destination_type`` (``dlt.destinations.duckdb``).

    Not ``destination_name``: that is the user's name for the destination (``destination_name="warehouse"``,
    or a ``[destination.warehouse]`` section with ``destination_type="postgres"``), while what this
    package does per destination (exact loader formats, DuckDB's memory cap and file hold) follows the
    database it writes to. None without a destination.
    """
    kind = getattr(destination, "destination_type", None) if destination is not None else None
    return str(kind).rsplit(".", 1)[-1] if kind else None


def config_key(destination: Any, key: str) -> str:
    """The dlt config path of ``key`` (e.g. ``credentials.global_config``) for this destination.

    dlt reads a destination's settings in the section named like the destination
    (``destination.<destination_name>``), so a DuckDB destination named ``local`` reads
    ``destination.local.credentials.global_config``, not ``destination.duckdb...``.
    """
    return f"destination.{destination.destination_name}.{key}"
