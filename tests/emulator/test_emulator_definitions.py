"""v2 Flows and Revisions: definitions as Studio serves them, and engagements that walk only their revision."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from tests.kit.spec import StudioHttp, spec_errors
from twilio_studio.emulator import Dataset, Emulator
from twilio_studio.emulator.dataset import TRIGGER_OF
from twilio_studio.emulator.definitions import EVENTS, TRIGGER_EVENTS

# Twilio's widget library (../shared/API-NOTES.md "Flow definitions and revisions"): every event a step may name
LIBRARY_EVENTS = {
    "trigger": {"incomingMessage", "incomingCall", "incomingConversationMessage", "incomingRequest", "incomingParent"},
    "send-and-wait-for-reply": {"incomingMessage", "timeout", "deliveryFailure"},
    "gather-input-on-call": {"keypress", "speech", "timeout"},
    "split-based-on": {"match", "noMatch"},
    "make-http-request": {"success", "failed"},
    "run-function": {"success", "failed"},
    "set-variables": {"next"},
    "say-play": {"audioComplete"},
    "connect-call-to": {"callCompleted", "hangup"},
    "send-message": {"sent", "failed"},
    "record-voicemail": {"recordingComplete", "noAudio", "hangup"},
    "capture-payments": {
        "success",
        "maxFailedAttempts",
        "providerError",
        "payInterrupted",
        "hangup",
        "validationError",
    },
}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(Dataset(seed=5, flows=7, engagements_per_flow=150, payment_flows=1)) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def http(emu: Emulator) -> StudioHttp:
    return StudioHttp(emu.base_url)


def revisions(http: StudioHttp, flow_sid: str) -> dict[int, dict[str, Any]]:
    """Every revision of a flow, fetched one by one, by number."""
    listed = http.records(f"/v2/Flows/{flow_sid}/Revisions", PageSize=2)
    assert all(r["definition"] is None for r in listed)  # the list never carries definitions
    return {r["revision"]: http.json(f"/v2/Flows/{flow_sid}/Revisions/{r['revision']}") for r in listed}


def edges(definition: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(state, event, next or Ended) of every transition of a definition."""
    return {(s["name"], t["event"], t.get("next") or "Ended") for s in definition["states"] for t in s["transitions"]}


def test_list_has_no_definition_and_fetch_has_the_latest(emu: Emulator, http: StudioHttp) -> None:
    listed = http.records("/v2/Flows", PageSize=3)
    assert [f["sid"] for f in listed] == [f.sid for f in reversed(emu.dataset.flows)]
    assert all(f["definition"] is None for f in listed)
    for item in listed:
        fetched = http.json(f"/v2/Flows/{item['sid']}")
        latest = http.json(f"/v2/Flows/{item['sid']}/Revisions/LatestRevision")
        assert fetched["definition"] == latest["definition"] and fetched["definition"]["initial_state"] == "Trigger"
        assert (fetched["revision"], fetched["status"], fetched["commit_message"]) == (
            latest["revision"], latest["status"], latest["commit_message"],
        )  # fmt: skip
        v1 = http.json(f"/v1/Flows/{item['sid']}")
        assert v1["version"] == fetched["revision"] and v1["status"] == fetched["status"]


def test_revisions_add_rename_and_rewire_widgets(emu: Emulator, http: StudioHttp) -> None:
    for flow in emu.dataset.flows:
        revs = revisions(http, flow.sid)
        assert sorted(revs) == list(range(1, flow.version + 1)) and len(revs) >= 4
        names = {n: [s["name"] for s in r["definition"]["states"]] for n, r in revs.items()}
        assert len(names[2]) == len(names[1]) + 2, "revision 2 adds two widgets"
        renamed = set(names[2]) ^ set(names[3])
        assert len(renamed) == 2 and len(names[3]) == len(names[2]), "revision 3 renames one widget"
        assert set(names[4]) == set(names[3])
        splits = [s for s in revs[4]["definition"]["states"] if s["type"] == "split-based-on"]
        assert all(t["conditions"] for t in splits[0]["transitions"] if t["event"] == "match")
        if flow.template != "ivr_payment":  # its split is second to last: there is no widget to skip to
            assert edges(revs[4]["definition"]) != edges(revs[3]["definition"]), "revision 4 rewires the split"
            assert [t["event"] for t in splits[0]["transitions"]] == ["match", "match", "noMatch"]
        dates = [revs[n]["date_created"] for n in sorted(revs)]
        assert dates == sorted(dates)
        assert all(r["status"] == "published" for n, r in revs.items() if n < flow.version)


def test_draft_flow_keeps_its_last_revision_unpublished(emu: Emulator, http: StudioHttp) -> None:
    draft = emu.dataset.flows[6]  # one flow in seven
    assert http.json(f"/v2/Flows/{draft.sid}")["status"] == "draft"
    latest = http.json(f"/v2/Flows/{draft.sid}/Revisions/LatestRevision")
    published = http.json(f"/v2/Flows/{draft.sid}/Revisions/LatestPublished")
    assert (latest["status"], published["status"]) == ("draft", "published")
    assert published["revision"] == latest["revision"] - 1
    versions = {e["flow_version"] for e in http.records(f"/v2/Flows/{draft.sid}/Executions", PageSize=1000)}
    assert latest["revision"] not in versions  # nothing runs a draft


@pytest.mark.parametrize("revision", ["0", "99", "latest", "-1"], ids=["zero", "past_the_last", "word", "negative"])
def test_unknown_revision_is_twilios_404(emu: Emulator, http: StudioHttp, revision: str) -> None:
    r = http.session.get(f"{emu.base_url}/v2/Flows/{emu.dataset.flows[0].sid}/Revisions/{revision}")
    assert r.status_code == 404 and r.json()["code"] == 20404


def test_executions_walk_only_their_revisions_states_and_transitions(emu: Emulator, http: StudioHttp) -> None:
    events_seen: dict[str, set[str]] = {}
    for flow in emu.dataset.flows:
        revs = revisions(http, flow.sid)
        executions = http.records(f"/v2/Flows/{flow.sid}/Executions", PageSize=1000)
        assert len({e["flow_version"] for e in executions}) >= 2, "engagements of several revisions"
        for execution in executions[::7]:
            definition = revs[execution["flow_version"]]["definition"]
            types = {s["name"]: s["type"] for s in definition["states"]}
            steps = http.records(f"/v2/Flows/{flow.sid}/Executions/{execution['sid']}/Steps")
            walked = list(reversed(steps))  # newest first in the list
            first = (walked[0]["transitioned_from"], walked[0]["name"])
            assert first == ("Trigger", TRIGGER_EVENTS[TRIGGER_OF[flow.template]])
            for step in walked:
                assert (step["transitioned_from"], step["name"], step["transitioned_to"]) in edges(definition)
                assert step["type"] == types[step["transitioned_from"]]
                events_seen.setdefault(step["type"], set()).add(step["name"])
            for a, b in itertools.pairwise(walked):
                assert b["transitioned_from"] == a["transitioned_to"]  # each step starts where the last went
            if execution["status"] == "ended" and walked[-1]["transitioned_to"] != "Ended":
                pytest.fail("an ended execution's last step must go to Ended, unless cut at 30 days")
    for wtype, seen in events_seen.items():
        assert seen <= LIBRARY_EVENTS[wtype], wtype
    assert set(events_seen) == set(LIBRARY_EVENTS)  # every widget type of the catalogue ran
    assert {"timeout", "keypress", "speech", "noMatch", "match", "success"} <= set().union(*events_seen.values())


def test_every_widget_type_has_library_events() -> None:
    for wtype, events in EVENTS.items():
        if wtype in LIBRARY_EVENTS:
            assert {e for e, _, _ in events} == LIBRARY_EVENTS[wtype], wtype


def test_a_flow_of_2000_states_is_served_and_valid() -> None:
    with Emulator(Dataset(seed=3, flows=1, engagements_per_flow=20, extra_states=1991)) as big:
        http = StudioHttp(big.base_url)
        sid = big.dataset.flows[0].sid
        path = f"/v2/Flows/{sid}"
        body = http.json(path)
        assert len(body["definition"]["states"]) == 2000  # Studio's limit (../shared/API-NOTES.md)
        assert spec_errors(path, body) == []
        rev = http.json(f"{path}/Revisions/{body['revision']}")
        assert rev["definition"] == body["definition"]
        assert len(http.records(f"/v1/Flows/{sid}/Engagements")) == 20
