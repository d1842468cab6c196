"""The test kit: what the tests share, one module per concern.

- ``studio``: the emulator's test credentials, the source built against an emulator, the one
  emulator factory behind the ``emulator_factory`` fixture, and what the emulator lists at a
  moment (computed from its dataset, not over HTTP).
- ``duck``: the one DuckDB pipeline builder (``duckdb_pipeline``) and ``Loaded``, a pipeline with
  a query helper.
- ``postgres``: the same for the PostgreSQL server named by ``TWILIO_STUDIO_TEST_POSTGRES``.
- ``cli``: the ``twilio-studio`` command run as a user runs it (a subprocess).
- ``spec``: Twilio's vendored OpenAPI spec as a validator, and a small HTTP client.
- ``loopback``: programmable HTTP servers on 127.0.0.1 for hostile or broken APIs.
- ``tables``: table snapshots and consistency checks of a loaded dataset.
- ``scenarios``: data-set probes shared by a DuckDB test and its PostgreSQL twin (card data,
  erasure, subaccounts).

Fixtures live in ``tests/conftest.py`` (and ``tests/postgres/conftest.py``); test modules import
helpers from here, never from another test module.
"""
