"""Fixtures shared by every test package: real Studio emulators on 127.0.0.1 and a DuckDB pipeline.

The helpers behind them live in ``tests/kit``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.duck import Loaded
from tests.kit.studio import EmulatorFactory
from twilio_studio.emulator import Emulator


@pytest.fixture
def emulator_factory() -> Iterator[EmulatorFactory]:
    """``emulator_factory(flows=2, engagements=60, seed=11, faults=...)`` -> a running Emulator.

    Every emulator it started is stopped after the test.
    """
    factory = EmulatorFactory()
    yield factory
    factory.close()


@pytest.fixture
def emulator(emulator_factory: EmulatorFactory) -> Emulator:
    """The default emulator: two flows of sixty engagements (DEFAULT_ENGAGEMENTS in all)."""
    return emulator_factory()


@pytest.fixture
def loaded(tmp_path: Path) -> Loaded:
    """A pipeline into a DuckDB file of the test's own."""
    return Loaded(tmp_path)
