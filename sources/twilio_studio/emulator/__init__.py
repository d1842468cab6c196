"""A faithful local emulator of Twilio Studio's REST API (v1 Flows, Engagements, Executions, Steps; v2 Executions).

Start it in-process::

    with serve(flows=3, engagements_per_flow=500) as base_url:
        ...  # point the source at base_url with the default emulator credentials

or from the shell with ``twilio-studio emulator --port 8080``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from twilio_studio.emulator.accounts import Subaccount
from twilio_studio.emulator.api import Credentials
from twilio_studio.emulator.dataset import Dataset
from twilio_studio.emulator.server import Clock, Emulator, Faults

__all__ = ["Clock", "Credentials", "Dataset", "Emulator", "Faults", "Subaccount", "serve"]


@contextmanager
def serve(
    *,
    seed: int = 7,
    flows: int = 3,
    engagements_per_flow: int = 200,
    payment_flows: int = 0,
    faults: Faults | None = None,
    credentials: Credentials | None = None,
) -> Iterator[str]:
    """Runs an emulator on a free loopback port for the duration of the block; yields its base URL."""
    dataset = Dataset(seed=seed, flows=flows, engagements_per_flow=engagements_per_flow, payment_flows=payment_flows)
    with Emulator(dataset, faults=faults, credentials=credentials) as emulator:
        yield emulator.base_url
