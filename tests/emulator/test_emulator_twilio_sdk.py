"""Twilio's official Python SDK, pointed at the emulator, reads exactly the emulator's records."""

from __future__ import annotations

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from tests.kit.sdk import EmulatorHttpClient, sdk_client
from tests.kit.spec import CREDENTIALS, visible_sids
from tests.kit.studio import EmulatorFactory


@pytest.mark.parametrize("credentials", ["auth_token", "api_key"])
@pytest.mark.parametrize(
    ("flows", "engagements", "page_size"),
    [
        pytest.param(2, 130, 25, id="several_pages"),
        pytest.param(3, 60, 60, id="one_full_page_exactly"),
        pytest.param(1, 0, 10, id="no_engagements"),
    ],
)
def test_sdk_lists_exactly_the_emulators_flows_and_engagements(
    emulator_factory: EmulatorFactory, credentials: str, flows: int, engagements: int, page_size: int
) -> None:
    emulator = emulator_factory(seed=11, flows=flows, engagements=engagements)
    client, http_client = sdk_client(emulator, credentials)

    listed_flows = client.studio.v1.flows.list()
    assert [f.sid for f in listed_flows] == [f.sid for f in reversed(emulator.dataset.flows)]
    assert {f.account_sid for f in listed_flows} == {CREDENTIALS.account_sid}

    for flow in listed_flows:
        before = len(http_client.urls)
        engagements_listed = client.studio.v1.flows(flow.sid).engagements.list(page_size=page_size)
        index = next(f.index for f in emulator.dataset.flows if f.sid == flow.sid)
        expected = visible_sids(emulator, index)
        assert len(expected) == engagements
        assert [e.sid for e in engagements_listed] == expected
        assert {e.flow_sid for e in engagements_listed} <= {flow.sid}
        pages = http_client.urls[before:]
        assert len(pages) == max(1, -(-engagements // page_size))
        assert all(url.startswith(emulator.base_url + f"/v1/Flows/{flow.sid}/Engagements?") for url in pages)
        assert f"PageSize={page_size}" in pages[0]
        assert all("PageToken=" in url for url in pages[1:])


def test_sdk_reads_an_engagements_context_and_steps(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(seed=11)
    client, _ = sdk_client(emulator, "auth_token")
    dataset = emulator.dataset
    flow = dataset.flows[0]
    sid = visible_sids(emulator, 0)[-1]  # the oldest: it has ended and has all its steps
    view = dataset.view(dataset.script(flow, dataset.locate(flow, sid) or 0), emulator.now())

    engagement = client.studio.v1.flows(flow.sid).engagements(sid).fetch()
    context = client.studio.v1.flows(flow.sid).engagements(sid).engagement_context().fetch()
    steps = client.studio.v1.flows(flow.sid).engagements(sid).steps.list(page_size=2)
    v2_steps = client.studio.v2.flows(flow.sid).executions(sid).steps.list(page_size=3)

    assert (engagement.sid, engagement.status) == (sid, view.status)
    assert context.context == view.context
    assert context.engagement_sid == sid
    assert [s.sid for s in steps] == [s.sid for s in reversed(view.steps)]
    assert [s.sid for s in v2_steps] == [s.sid for s in reversed(view.steps)]
    # the spec's reading: name is the event, transitioned_from the widget that ran, type its type
    walked = list(reversed(view.steps))
    assert [s.name for s in steps] == [s.event for s in walked]
    assert [(s.transitioned_from, s.transitioned_to, s.type) for s in steps] == [
        (s.widget.name, s.transitioned_to, s.widget.type) for s in walked
    ]
    assert (steps[-1].name, steps[-1].transitioned_from, steps[-1].type) == ("incomingMessage", "Trigger", "trigger")
    assert steps[0].transitioned_to == "Ended"


def test_sdk_raises_twilios_error_for_an_unknown_engagement(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory()
    client, _ = sdk_client(emulator, "auth_token")
    flow = emulator.dataset.flows[0].sid
    with pytest.raises(TwilioRestException) as err:
        client.studio.v1.flows(flow).engagements("FN" + "0" * 32).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)


def test_sdk_raises_twilios_error_for_wrong_credentials(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory()
    client = Client(CREDENTIALS.account_sid, "wrong-token", http_client=EmulatorHttpClient(emulator.base_url))
    with pytest.raises(TwilioRestException) as err:
        client.studio.v1.flows(emulator.dataset.flows[0].sid).fetch()
    assert (err.value.status, err.value.code) == (401, 20003)
