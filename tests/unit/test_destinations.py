"""What kind of database a destination is, by dlt's destination type rather than the name the user gave it."""

from __future__ import annotations

import dlt

from twilio_studio.destinations import config_key, destination_kind


def test_the_kind_is_the_database_whatever_the_destination_is_named() -> None:
    assert destination_kind(dlt.destinations.duckdb("/tmp/x.duckdb")) == "duckdb"
    assert destination_kind(dlt.destinations.duckdb("/tmp/x.duckdb", destination_name="local")) == "duckdb"
    warehouse = dlt.destinations.postgres(credentials="postgresql://u:p@127.0.0.1/db", destination_name="warehouse")
    assert destination_kind(warehouse) == "postgres"
    assert destination_kind(None) is None


def test_settings_are_read_in_the_section_of_the_destinations_name() -> None:
    assert config_key(dlt.destinations.duckdb("/tmp/x.duckdb"), "credentials.global_config") == (
        "destination.duckdb.credentials.global_config"
    )
    local = dlt.destinations.duckdb("/tmp/x.duckdb", destination_name="local")
    assert config_key(local, "credentials.global_config") == "destination.local.credentials.global_config"
