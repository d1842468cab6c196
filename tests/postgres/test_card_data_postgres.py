"""Card data never lands in PostgreSQL: not in its tables, not in the gzip'd INSERT files dlt loads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.postgres import PgLoaded
from tests.kit.scenarios import WITH_STEPS, distinctive, leaks_in_files, served_card_values, text_cells
from tests.kit.studio import make_source
from twilio_studio.emulator import Dataset, Emulator
from twilio_studio.redact import CARD_FIELDS, MARKER


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[PgLoaded]:
    loaded = PgLoaded(tmp_path)
    yield loaded
    loaded.drop()


@pytest.fixture
def payments() -> Iterator[Emulator]:
    with Emulator(Dataset(seed=6, flows=1, engagements_per_flow=60, payment_flows=1)) as emu:
        emu.advance(hours=2)
        yield emu


@pytest.mark.slow
@pytest.mark.parametrize("keep", [pytest.param(False, id="default_redacts"), pytest.param(True, id="kept_on_request")])
def test_card_values_in_postgres(payments: Emulator, pg: PgLoaded, tmp_path: Path, keep: bool) -> None:
    needles = distinctive(served_card_values(payments))
    assert len(needles) > 50
    pg.run(make_source(payments.base_url, widget_fields="all", keep_card_data=keep).with_resources(*WITH_STEPS))
    cells = text_cells(pg.sql, pg.dataset, ("TEXT", "JSONB", "CHARACTER VARYING"))
    assert len(cells) > 3_000
    in_tables = {n for n in needles for cell in cells if n in cell}
    in_files = set().union(set(), *leaks_in_files(tmp_path / "pg_pipelines", needles).values())
    if keep:
        assert in_tables == in_files == needles  # the searches see them when they are there
        return
    assert in_tables == set() and in_files == set()
    values = pg.sql(
        "SELECT path, array_agg(DISTINCT value) FROM {ds}.engagements__widgets__fields "
        f"WHERE path IN ({', '.join(repr(n) for n in CARD_FIELDS)}) GROUP BY 1"
    )
    assert dict(values) == {name: [MARKER] for name in CARD_FIELDS}
