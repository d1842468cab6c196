"""Every test here needs the PostgreSQL server: it skips without one (and fails under CI=true)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.postgres import PgLoaded, postgres_url


@pytest.fixture(autouse=True)
def _require_postgres() -> None:
    postgres_url()


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[PgLoaded]:
    """A PostgreSQL dataset of the test's own, dropped after it."""
    loaded = PgLoaded(tmp_path)
    yield loaded
    loaded.drop()
