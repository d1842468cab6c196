"""pseudonymize_key: contact addresses become keyed hashes everywhere, consistently."""

from __future__ import annotations

import pytest

from tests.kit.duck import Loaded
from tests.kit.studio import listed, make_source
from twilio_studio.emulator import Emulator
from twilio_studio.privacy import Pseudonymizer

ALL = ("flows", "engagements", "engagement_steps", "executions", "execution_steps")


def addresses(emu: Emulator) -> set[str]:
    return {script.address for script in listed(emu)}


def text_cells(loaded: Loaded) -> list[str]:
    """Every text and JSON cell of every table, as text."""
    columns = loaded.sql(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'twilio_studio' AND data_type IN ('VARCHAR', 'JSON')"
    )
    cells: list[str] = []
    for table, column in columns:
        cells.extend(str(r[0]) for r in loaded.sql(f'SELECT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL'))
    return cells


@pytest.mark.slow
def test_no_contact_address_is_stored_when_pseudonymized(emulator: Emulator, loaded: Loaded) -> None:
    source = make_source(emulator.base_url, pseudonymize_key="k-one", widget_fields="all")
    loaded.run(source.with_resources(*ALL))
    raw = addresses(emulator)
    cells = text_cells(loaded)
    assert len(cells) > 10_000
    leaked = {a for a in raw for cell in cells if a in cell}
    assert leaked == set()
    tokens = {r[0] for r in loaded.sql("SELECT DISTINCT contact_channel_address FROM engagements")}
    assert tokens == {Pseudonymizer("k-one").token(a) for a in raw}  # distinct contacts still countable
    replies = loaded.sql("SELECT DISTINCT value FROM engagements__widgets__fields WHERE path = 'inbound.From'")
    assert replies and all(r[0].startswith("hmac:") for r in replies)


def test_without_key_addresses_are_kept(emulator: Emulator, loaded: Loaded) -> None:
    loaded.run(make_source(emulator.base_url))
    stored = {r[0] for r in loaded.sql("SELECT DISTINCT contact_channel_address FROM engagements")}
    assert stored == addresses(emulator)


def test_tokens_depend_on_the_key() -> None:
    one, two = Pseudonymizer("a"), Pseudonymizer("b")
    assert one.token("+15551234567") == one.token("+15551234567") != two.token("+15551234567")
    assert one.token(one.token("+15551234567")) == one.token("+15551234567")
    assert "a" not in repr(one).replace("Pseudonymizer", "")
