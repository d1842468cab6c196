"""The emulator as the tests use it: credentials, the source, one factory, what it lists."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pytest

from twilio_studio import twilio_studio_source
from twilio_studio.emulator import Credentials, Dataset, Emulator, Faults, Subaccount
from twilio_studio.emulator.dataset import EngagementView, Script

ACCOUNT_SID = "AC" + "a" * 32  # the emulator's documented test account (Credentials()); not a secret
AUTH_TOKEN = "emulator-auth-token"

# The default emulator of ``emulator_factory``: two flows of sixty engagements, seed 11. Its
# engagements are all created in the week after the emulator's start and Twilio keeps 30 days, so a
# first load of it lists every one of them: DEFAULT_ENGAGEMENTS rows in ``engagements``.
DEFAULT_FLOWS = 2
DEFAULT_ENGAGEMENTS_PER_FLOW = 60
DEFAULT_SEED = 11
DEFAULT_ENGAGEMENTS = DEFAULT_FLOWS * DEFAULT_ENGAGEMENTS_PER_FLOW  # 120


def make_source(base_url: str, **options: Any) -> Any:
    """The source with the emulator's documented test credentials."""
    options.setdefault("account_sid", ACCOUNT_SID)
    options.setdefault("auth_token", AUTH_TOKEN)
    return twilio_studio_source(base_url=base_url, **options)


def source_env(base_url: str, token: str = AUTH_TOKEN, account_sid: str = ACCOUNT_SID) -> dict[str, str]:
    """The source's configuration as dlt reads it from the environment (for subprocesses)."""
    return {
        "SOURCES__TWILIO_STUDIO__ACCOUNT_SID": account_sid,
        "SOURCES__TWILIO_STUDIO__AUTH_TOKEN": token,
        "SOURCES__TWILIO_STUDIO__BASE_URL": base_url,
    }


class EmulatorFactory:
    """Starts emulators on free loopback ports and stops every one of them at ``close``.

    ``factory(flows=2, engagements=60, seed=11, faults=...)`` builds ``Dataset(seed, flows,
    engagements_per_flow=engagements, **dataset_options)``; or pass a whole ``dataset``.
    ``faults``, ``credentials``, ``realtime`` and ``subaccounts`` go to the Emulator.
    """

    def __init__(self) -> None:
        self.started: list[Emulator] = []

    def __call__(
        self,
        flows: int = DEFAULT_FLOWS,
        engagements: int = DEFAULT_ENGAGEMENTS_PER_FLOW,
        seed: int = DEFAULT_SEED,
        faults: Faults | None = None,
        *,
        dataset: Dataset | None = None,
        credentials: Credentials | None = None,
        realtime: bool = False,
        subaccounts: Sequence[Subaccount] = (),
        **dataset_options: Any,
    ) -> Emulator:
        """A running emulator; see the class docstring."""
        data = dataset or Dataset(seed=seed, flows=flows, engagements_per_flow=engagements, **dataset_options)
        emulator = Emulator(data, faults=faults, credentials=credentials, realtime=realtime, subaccounts=subaccounts)
        self.started.append(emulator.start())
        return emulator

    def close(self) -> None:
        """Stops every emulator this factory started."""
        for emulator in self.started:
            emulator.stop()


def listed(emu: Emulator | Dataset, at: datetime | None = None, flows: Iterable[int] | None = None) -> list[Script]:
    """The engagements the API lists at ``at`` (default: the emulator's clock), flow by flow, oldest first.

    Computed from the dataset, not over HTTP, so a test compares what the source loaded with what
    the emulator holds. ``flows`` keeps only the flows of these indices.
    """
    dataset = emu if isinstance(emu, Dataset) else emu.dataset
    if at is None:
        assert isinstance(emu, Emulator), "listed(dataset) needs the moment: at=..."
        at = emu.now()
    keep = None if flows is None else set(flows)
    return [
        dataset.script(flow, i)
        for flow in dataset.flows
        if keep is None or flow.index in keep
        for i in range(*dataset.index_range(flow, at))
    ]


def listed_views(emu: Emulator | Dataset, at: datetime | None = None) -> list[EngagementView]:
    """Every listed engagement as the API shows it at ``at`` (default: now): status, steps, context."""
    dataset = emu if isinstance(emu, Dataset) else emu.dataset
    if at is None:
        assert isinstance(emu, Emulator), "listed_views(dataset) needs the moment: at=..."
        at = emu.now()
    moment = at
    return [dataset.view(script, moment) for script in listed(dataset, moment)]


def expected_walks(emu: Emulator, page_size: int) -> dict[str, tuple[int, int]]:
    """Per flow: the list pages a complete walk reads (an empty list is one page) and its engagements."""
    out = {}
    for flow in emu.dataset.flows:
        n = len(listed(emu, flows=[flow.index]))
        out[flow.sid] = (max(1, math.ceil(n / page_size)), n)
    return out


def expected_sids(emu: Emulator, flows: list[int] | None = None) -> set[str]:
    """The SIDs of the engagements the emulator lists right now (of the flows of these indices)."""
    return {script.sid for script in listed(emu, flows=flows)}


def failure_text(error: BaseException | pytest.ExceptionInfo[BaseException]) -> str:
    """The whole chain of messages a user sees, from dlt's wrapper down to the cause."""
    texts, seen = [], set()
    current: BaseException | None = error.value if isinstance(error, pytest.ExceptionInfo) else error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(texts)
