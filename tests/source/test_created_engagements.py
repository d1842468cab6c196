"""An engagement created through the API (CreateEngagement) loads like any other.

Its parameters are its flow data.
"""

from __future__ import annotations

import json

import requests

from tests.kit.duck import Loaded
from tests.kit.studio import ACCOUNT_SID, AUTH_TOKEN, expected_sids, make_source
from twilio_studio.emulator import Emulator

PARAMETERS = {"customer": "Zeke", "order": {"id": "ORD-9", "lines": [{"sku": "A1", "qty": 2}]}, "vip": True}


def test_a_created_engagement_loads_with_its_parameters(emulator: Emulator, loaded: Loaded) -> None:
    flow_sid = emulator.dataset.flows[0].sid
    r = requests.post(
        f"{emulator.base_url}/v1/Flows/{flow_sid}/Engagements",
        data={"To": "+14155550100", "From": "+15005550006", "Parameters": json.dumps(PARAMETERS)},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=10,
    )
    assert r.status_code == 200
    sid = r.json()["sid"]
    loaded.run(make_source(emulator.base_url).with_resources("engagements", "executions"))

    assert loaded.scalar("SELECT count(*) FROM engagements") == len(expected_sids(emulator)) + 1
    row = loaded.sql("SELECT contact_channel_address, status, trigger_type FROM engagements WHERE sid = ?", sid)
    assert row == [("+14155550100", "active", "request")]
    flow_data = loaded.sql(
        "SELECT key, path, value, value_type FROM engagements__flow_data WHERE engagement_sid = ? ORDER BY key, path",
        sid,
    )
    assert flow_data == [
        ("customer", "", "Zeke", "string"),
        ("order", "id", "ORD-9", "string"),
        ("order", "lines[0].qty", "2", "number"),
        ("order", "lines[0].sku", "A1", "string"),
        ("vip", "", "true", "boolean"),
    ]
    assert loaded.scalar("SELECT count(*) FROM executions__flow_data WHERE execution_sid = ?", sid) == 5

    emulator.advance(hours=2)  # it walks its flow: the next load brings the change
    written = loaded.run(make_source(emulator.base_url).with_resources("engagements"))
    assert written["engagements"] >= 1
    assert loaded.sql("SELECT status FROM engagements WHERE sid = ?", sid) == [("ended",)]
    assert loaded.scalar("SELECT count(*) FROM engagements__widgets WHERE engagement_sid = ?", sid) > 0
