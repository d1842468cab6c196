"""Card data never lands: the Capture Payments values the emulator served are nowhere in the
destination, nor in the pipeline's files (extracted, normalized and loaded packages)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.source.conftest import Loaded, make_source
from twilio_studio import ConfigurationError
from twilio_studio.emulator import Dataset, Emulator
from twilio_studio.redact import CARD_FIELDS, MARKER

ALL = ("flows", "engagements", "engagement_steps", "executions", "execution_steps")


def served_card_values(emu: Emulator) -> dict[str, set[str]]:
    """Every card value the emulator shows now, by field (computed from its dataset, not over HTTP)."""
    d, now = emu.dataset, emu.now()
    out: dict[str, set[str]] = {name: set() for name in CARD_FIELDS}
    for flow in d.flows:
        for i in range(*d.index_range(flow, now)):
            for step in d.view(d.script(flow, i), now).steps:
                if step.widget.type == "capture-payments":
                    for name in CARD_FIELDS:
                        if step.output.get(name):
                            out[name].add(step.output[name])
    return out


def distinctive(served: dict[str, set[str]]) -> set[str]:
    """Card numbers and tokens: values no other data of the emulator can hold by chance."""
    return served["PaymentCardNumber"] | served["PaymentToken"]


def file_texts(root: Path) -> Iterator[tuple[Path, str]]:
    """The text of every file under ``root``: Parquet decoded, gzip'd files decompressed."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        if raw[:4] == b"PAR1":
            yield path, str(pq.read_table(path).to_pylist())
        elif raw[:2] == b"\x1f\x8b":
            yield path, gzip.decompress(raw).decode("utf-8", "replace")
        else:
            yield path, raw.decode("utf-8", "replace")


def leaks_in_files(root: Path, needles: set[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path, text in file_texts(root):
        hits = {n for n in needles if n in text}
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def text_cells(sql: Any, schema: str, types: tuple[str, ...]) -> list[str]:
    """Every text and JSON cell of every table of ``schema``, as text."""
    kinds = ", ".join(f"'{t}'" for t in types)
    columns = sql(
        "SELECT table_name, column_name FROM information_schema.columns "
        f"WHERE table_schema = '{schema}' AND upper(data_type) IN ({kinds})"
    )
    cells: list[str] = []
    for table, column in columns:
        query = f'SELECT CAST("{column}" AS TEXT) FROM "{schema}"."{table}" WHERE "{column}" IS NOT NULL'
        cells.extend(str(r[0]) for r in sql(query))
    return cells


@pytest.fixture
def payments() -> Iterator[Emulator]:
    with Emulator(Dataset(seed=5, flows=1, engagements_per_flow=80, payment_flows=2)) as emu:
        emu.advance(hours=2)  # every engagement past its payment step
        yield emu


def test_no_card_value_lands_by_default(payments: Emulator, loaded: Loaded, tmp_path: Path) -> None:
    served = served_card_values(payments)
    needles = distinctive(served)
    assert len(served["PaymentCardNumber"]) > 50 and len(served["PaymentToken"]) > 50
    loaded.run(make_source(payments.base_url, widget_fields="all").with_resources(*ALL))

    cells = text_cells(loaded.sql, "twilio_studio", ("VARCHAR", "JSON"))
    assert len(cells) > 5_000
    assert {n for n in needles for cell in cells if n in cell} == set()
    assert leaks_in_files(tmp_path / "pipelines", needles) == {}
    db = Path(loaded.db).read_bytes()
    assert [n for n in needles if n.encode() in db] == []

    # every sensitive field is the marker wherever it was normalized; the outcome fields stay
    for table in ("engagements__widgets__fields", "executions__widgets__fields", "engagement_steps__widgets__fields"):
        values = dict(loaded.sql(f"SELECT path, list(DISTINCT value) FROM {table} GROUP BY 1"))
        for name in CARD_FIELDS:
            assert values[name] == [MARKER], (table, name)
        assert "success" in values["Result"]
        assert set(values["PaymentCardType"]) <= {"visa", "mastercard", "amex", "discover"}
    outputs = loaded.sql(
        "SELECT json_extract_string(outputs, '$.SecurityCode'), json_extract_string(outputs, '$.PaymentCardType') "
        "FROM engagements__widgets "
        "WHERE name LIKE '%take_payment%' AND json_extract_string(outputs, '$.Result') = 'success'"
    )
    assert outputs and {o[0] for o in outputs} == {MARKER} and all(o[1] for o in outputs)
    token = "json_extract_string(context, '$.widgets.take_payment.PaymentToken')"
    assert loaded.scalar(f"SELECT count(*) FROM engagements WHERE {token} = ?", MARKER) > 30


def test_keep_card_data_stores_them(payments: Emulator, loaded: Loaded, tmp_path: Path) -> None:
    """The same searches find them when the user opts in: the test above is not blind."""
    needles = distinctive(served_card_values(payments))
    loaded.run(make_source(payments.base_url, keep_card_data=True).with_resources("engagements", "engagement_steps"))
    cells = text_cells(loaded.sql, "twilio_studio", ("VARCHAR", "JSON"))
    assert {n for n in needles for cell in cells if n in cell} == needles
    in_files = set().union(*leaks_in_files(tmp_path / "pipelines", needles).values())
    assert in_files == needles  # the load packages hold them too


@pytest.mark.parametrize("value", [pytest.param("yes", id="a_string"), pytest.param(1, id="a_number")])
def test_keep_card_data_must_be_a_boolean(value: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"keep_card_data: .* is not true or false"):
        make_source("http://127.0.0.1:1", keep_card_data=value)
