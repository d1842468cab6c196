"""Card data never lands.

The Capture Payments values the emulator served are nowhere in the destination, nor in the
pipeline's files (extracted, normalized and loaded packages).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kit.duck import Loaded
from tests.kit.scenarios import WITH_STEPS, distinctive, leaks_in_files, served_card_values, text_cells
from tests.kit.studio import make_source
from twilio_studio import ConfigurationError
from twilio_studio.emulator import Dataset, Emulator
from twilio_studio.redact import CARD_FIELDS, MARKER


@pytest.fixture
def payments() -> Iterator[Emulator]:
    with Emulator(Dataset(seed=5, flows=1, engagements_per_flow=80, payment_flows=2)) as emu:
        emu.advance(hours=2)  # every engagement past its payment step
        yield emu


@pytest.mark.slow
def test_no_card_value_lands_by_default(payments: Emulator, loaded: Loaded, tmp_path: Path) -> None:
    served = served_card_values(payments)
    needles = distinctive(served)
    assert len(served["PaymentCardNumber"]) > 50 and len(served["PaymentToken"]) > 50
    loaded.run(make_source(payments.base_url, widget_fields="all").with_resources(*WITH_STEPS))

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


def test_card_keys_on_a_page_are_redacted_however_the_page_spells_them(loaded: Loaded) -> None:
    import json

    from tests.kit.loopback import Answer, DynamicStudio, engagement, flow, page, routes

    fw = "FW" + "1" * 32
    paid = {"widgets": {"pay": {"PaymentCardNumber": "4111111111111111", "Result": "success"}}}
    # JSON may spell any letter of a key as an escape: that page's text then shows no hint at all
    escaped = {"widgets": {"pay": {"QQaymentToken": "tok_9f8e7d6c5b4a", "Result": "success"}}}
    last = json.dumps(page("engagements", [engagement(fw, 5, context=escaped)], None)).encode()
    last = last.replace(b"QQaymentToken", b"\\u0050aymentToken")
    assert b"payment" not in last.lower()
    first = page("engagements", [*(engagement(fw, n) for n in range(1, 4)), engagement(fw, 4, context=paid)],
                 "{base}/v1/next")  # fmt: skip
    table = {
        "/v1/Flows?PageSize=1000": Answer(200, page("flows", [flow(fw)], None)),
        f"/v1/Flows/{fw}/Engagements?PageSize=1000": Answer(200, first),
        "/v1/next": Answer(200, last),
    }
    with DynamicStudio(routes(table)) as studio:
        loaded.run(make_source(studio.base_url))
    assert loaded.scalar("SELECT count(*) FROM engagements__widgets WHERE name = 'pay'") == 2
    cells = " ".join(str(c) for c in text_cells(loaded.sql, "twilio_studio", ("VARCHAR", "JSON")))
    assert "4111111111111111" not in cells and "tok_9f8e7d6c5b4a" not in cells
    outputs = loaded.sql(
        "SELECT json_extract_string(outputs, '$.PaymentCardNumber'), json_extract_string(outputs, '$.PaymentToken') "
        "FROM engagements__widgets WHERE name = 'pay' ORDER BY engagement_sid"
    )
    assert outputs == [(MARKER, None), (None, MARKER)]
    assert loaded.scalar("SELECT count(*) FROM engagements__flow_data") == 3  # the plain ones' data, as served
