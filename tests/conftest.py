"""Fixtures shared by all test packages: a real Studio emulator on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from twilio_studio.emulator import Dataset, Emulator


@pytest.fixture
def start_emulator() -> Iterator[Callable[..., Emulator]]:
    """A factory: ``start_emulator(flows=2, engagements_per_flow=100, faults=...)`` -> running Emulator.

    Dataset keywords (seed, flows, engagements_per_flow, ...) build the dataset; the others
    (faults, credentials, realtime) go to the Emulator. Every emulator is stopped after the test.
    """
    started: list[Emulator] = []

    def start(*, dataset: Dataset | None = None, **kwargs: Any) -> Emulator:
        emulator_args = {k: kwargs.pop(k) for k in ("faults", "credentials", "realtime") if k in kwargs}
        kwargs.setdefault("flows", 2)
        kwargs.setdefault("engagements_per_flow", 100)
        emulator = Emulator(dataset or Dataset(**kwargs), **emulator_args).start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()
