"""Fixtures for the source tests: a real emulator on loopback and a real DuckDB file per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest

from twilio_studio import twilio_studio_source
from twilio_studio.emulator import Dataset, Emulator, Faults

ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "emulator-auth-token"


def make_source(base_url: str, **options: Any) -> Any:
    """The source with the emulator's documented test credentials."""
    options.setdefault("account_sid", ACCOUNT_SID)
    options.setdefault("auth_token", AUTH_TOKEN)
    return twilio_studio_source(base_url=base_url, **options)


def expected_sids(emu: Emulator, flows: list[int] | None = None) -> set[str]:
    """What the emulator shows right now, computed from its dataset (not through HTTP)."""
    d, now = emu.dataset, emu.now()
    out: set[str] = set()
    for flow in d.flows:
        if flows is not None and flow.index not in flows:
            continue
        lo, hi = d.index_range(flow, now)
        out.update(d.script(flow, i).sid for i in range(lo, hi))
    return out


class Loaded:
    """A pipeline loading into a DuckDB file, with a query helper."""

    def __init__(self, tmp_path: Path, name: str = "studio") -> None:
        self.db = str(tmp_path / f"{name}.duckdb")
        self.pipeline = dlt.pipeline(
            pipeline_name=name,
            destination=dlt.destinations.duckdb(self.db),
            dataset_name="twilio_studio",
            pipelines_dir=str(tmp_path / "pipelines"),
        )

    def run(self, source: Any) -> dict[str, int]:
        """Runs the pipeline; returns the rows written per table in this run."""
        self.pipeline.run(source, loader_file_format="parquet")
        counts = self.pipeline.last_trace.last_normalize_info.row_counts
        return {k: v for k, v in counts.items() if not k.startswith("_dlt")}

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with duckdb.connect(self.db, read_only=True) as con:
            con.execute("SET search_path = 'twilio_studio'")
            return con.execute(query, list(params)).fetchall()

    def scalar(self, query: str, *params: Any) -> Any:
        return self.sql(query, *params)[0][0]


@pytest.fixture
def loaded(tmp_path: Path) -> Loaded:
    return Loaded(tmp_path)


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., Emulator]]:
    started: list[Emulator] = []

    def start(flows: int = 2, engagements: int = 60, seed: int = 11, faults: Faults | None = None) -> Emulator:
        emu = Emulator(Dataset(seed=seed, flows=flows, engagements_per_flow=engagements), faults=faults)
        started.append(emu.start())
        return emu

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture
def emulator(emulator_factory: Callable[..., Emulator]) -> Emulator:
    return emulator_factory()
