"""Flow definitions and revisions for the emulator, and the walk an engagement takes through one.

A flow has a few revisions, each an immutable definition ``{description, initial_state, flags,
states}`` as Studio v2 serves it: widgets are added, one is renamed, a split is rewired and a
failure branch is routed onward. An engagement runs the revision that was published when it was
created and walks only that revision's states and transitions, choosing each widget's event with
fixed odds per widget type (event names as in Twilio's widget library, ../shared/API-NOTES.md).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TRIGGER = "Trigger"
ENDED = "Ended"  # a step's transitioned_to where the flow ended
MAX_STEPS = 1000  # Twilio ends an execution after 1,000 steps (API-NOTES "Lifetime")

ALL_TRIGGER_EVENTS = (
    "incomingMessage", "incomingCall", "incomingConversationMessage", "incomingRequest", "incomingParent",
)  # fmt: skip
TRIGGER_EVENTS = {
    "message": "incomingMessage", "call": "incomingCall", "request": "incomingRequest", "parent": "incomingParent",
}  # fmt: skip
# The widget library's events per type: (event, odds, whether the branch continues to the next widget).
# A branch that does not continue has no `next` in the definition: the engagement ends there.
EVENTS: dict[str, tuple[tuple[str, float, bool], ...]] = {
    "send-message": (("sent", 0.97, True), ("failed", 0.03, False)),
    "send-and-wait-for-reply": (
        ("incomingMessage", 0.8, True), ("timeout", 0.17, False), ("deliveryFailure", 0.03, False),
    ),
    "gather-input-on-call": (("keypress", 0.56, True), ("speech", 0.24, True), ("timeout", 0.2, False)),
    "split-based-on": (("match", 0.9, True), ("noMatch", 0.1, False)),
    "make-http-request": (("success", 0.9, True), ("failed", 0.1, False)),
    "run-function": (("success", 0.95, True), ("failed", 0.05, False)),
    "set-variables": (("next", 1.0, True),),
    "say-play": (("audioComplete", 1.0, True),),
    "connect-call-to": (("callCompleted", 0.85, True), ("hangup", 0.15, False)),
    "record-voicemail": (("recordingComplete", 0.8, True), ("noAudio", 0.1, False), ("hangup", 0.1, False)),
    "run-subflow": (("completed", 0.9, True), ("failed", 0.1, False)),
    "capture-payments": (
        ("success", 0.8, True), ("maxFailedAttempts", 0.06, False), ("providerError", 0.05, False),
        ("payInterrupted", 0.03, False), ("hangup", 0.04, False), ("validationError", 0.02, False),
    ),
}  # fmt: skip
# Studio names a new widget after its type; users rename it later (revision 3 here does)
DEFAULT_NAMES = {
    "split-based-on": "split_1",
    "send-and-wait-for-reply": "send_and_reply_1",
    "gather-input-on-call": "gather_1",
    "make-http-request": "http_1",
}


@dataclass(frozen=True)
class Transition:
    """A transition of a widget: its event, the next widget, its conditions and how often it is taken."""

    event: str
    next: str | None  # None: the branch ends here
    conditions: tuple[dict[str, Any], ...] = ()
    odds: float = 1.0

    def render(self) -> dict[str, Any]:
        """The transition as a flow definition shows it."""
        out: dict[str, Any] = {"event": self.event}
        if self.next is not None:
            out["next"] = self.next
        if self.conditions:
            out["conditions"] = [dict(c) for c in self.conditions]
        return out


@dataclass(frozen=True)
class State:
    """A widget of a flow definition: its name, type, transitions and properties."""

    name: str
    type: str
    transitions: tuple[Transition, ...]
    properties: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def render(self) -> dict[str, Any]:
        """The widget as a flow definition shows it."""
        return {
            "name": self.name,
            "type": self.type,
            "transitions": [t.render() for t in self.transitions],
            "properties": self.properties,
        }


@dataclass(frozen=True)
class Revision:
    """A revision of a flow: number, status, commit message, date and its widgets."""

    number: int
    status: str  # draft | published
    commit_message: str
    date_created: datetime
    states: tuple[State, ...]
    description: str = ""
    by_name: dict[str, State] = field(default_factory=dict, hash=False, compare=False, repr=False)

    def definition(self) -> dict[str, Any]:
        """The revision's flow definition: description, initial state, flags and states."""
        return {
            "description": self.description,
            "initial_state": TRIGGER,
            "flags": {"allow_concurrent_calls": True},
            "states": [s.render() for s in self.states],
        }


def _properties(wtype: str, n: int, phone: str, subflow_sid: str | None = None) -> dict[str, Any]:
    offset = {"x": 40 + 260 * (n % 3), "y": 200 * n}
    props: dict[str, Any] = {"offset": offset}
    if wtype in ("send-message", "send-and-wait-for-reply"):
        props.update({"from": "{{flow.channel.address}}", "to": "{{contact.channel.address}}", "body": f"Message {n}"})
        if wtype == "send-and-wait-for-reply":
            props["timeout"] = "3600"
    elif wtype == "gather-input-on-call":
        props.update({"speech_timeout": "auto", "number_of_digits": 1, "timeout": 5, "say": "Press 1 or say it"})
    elif wtype == "make-http-request":
        props.update({"method": "GET", "url": "https://example.com/api/customer", "content_type": "application/json"})
    elif wtype == "run-function":
        props.update({"service_sid": "ZS" + "0" * 32, "url": "https://example.twil.io/fn"})
    elif wtype == "set-variables":
        props["variables"] = [{"key": "segment", "value": "{{widgets}}"}]
    elif wtype == "connect-call-to":
        props.update({"noun": "number", "to": phone, "timeout": 30})
    elif wtype == "run-subflow":
        props.update({"flow_sid": subflow_sid, "flow_revision": "LatestPublished", "parameters": []})
    return props


@dataclass(frozen=True)
class _Design:
    """What a revision changes, cumulatively: a flag per edit."""

    all_widgets: bool = False  # revision 2: the last two widgets are added
    renamed: bool = False  # revision 3: the split gets its final name
    rewired: bool = False  # revision 4: a second match branch skips a widget
    failover: bool = False  # revision 5: failed HTTP requests go on instead of ending


DESIGNS = (
    ("Initial version", _Design()),
    ("Add the last two widgets", _Design(all_widgets=True)),
    ("Rename the split widget", _Design(all_widgets=True, renamed=True)),
    ("Rewire the split: a second match skips a widget", _Design(all_widgets=True, renamed=True, rewired=True)),
    (
        "Failed HTTP requests go on",
        _Design(all_widgets=True, renamed=True, rewired=True, failover=True),
    ),
)


def design_states(
    widgets: Sequence[tuple[str, str]],
    trigger: str,
    design: _Design,
    phone: str,
    extra_states: int = 0,
    subflow_sid: str | None = None,
) -> tuple[State, ...]:
    """The states of one revision: the trigger, then the widgets wired in order by their events."""
    chosen = list(widgets if design.all_widgets or len(widgets) <= 3 else widgets[:-2])
    if not design.renamed:
        chosen = [(DEFAULT_NAMES.get(t, name) if t == "split-based-on" else name, t) for name, t in chosen]
    names = [name for name, _ in chosen]
    trigger_transitions = tuple(
        # the flow's own channel, and the REST API (which can start any flow), lead to the first widget
        Transition(event, names[0] if event in (TRIGGER_EVENTS[trigger], "incomingRequest") else None)
        for event in ALL_TRIGGER_EVENTS
    )
    states = [State(TRIGGER, "trigger", trigger_transitions, {"offset": {"x": 0, "y": 0}})]
    for n, (name, wtype) in enumerate(chosen):
        nxt = names[n + 1] if n + 1 < len(names) else None
        transitions: list[Transition] = []
        for event, odds, goes_on in EVENTS.get(wtype, (("next", 1.0, True),)):
            target = nxt if goes_on or (design.failover and wtype == "make-http-request") else None
            if wtype == "split-based-on" and event == "match":
                transitions.extend(_match_branches(name, names, n, design.rewired, odds))
                continue
            transitions.append(Transition(event, target, odds=odds))
        states.append(State(name, wtype, tuple(transitions), _properties(wtype, n + 1, phone, subflow_sid)))
    for k in range(extra_states):  # a long, disconnected chain: Studio allows unreachable widgets
        nxt = f"pad_{k + 2:04d}" if k + 1 < extra_states else None
        offset = {"offset": {"x": 900, "y": 80 * k}}
        states.append(State(f"pad_{k + 1:04d}", "set-variables", (Transition("next", nxt),), offset))
    return tuple(states)


def _match_branches(name: str, names: list[str], n: int, rewired: bool, odds: float) -> list[Transition]:
    nxt = names[n + 1] if n + 1 < len(names) else None
    condition = {
        "friendly_name": "answered",
        "arguments": ["{{widgets." + names[max(0, n - 1)] + "}}"],
        "type": "is_not_empty",
        "value": "true",
    }
    if not rewired or n + 2 >= len(names):
        return [Transition("match", nxt, (condition,), odds)]
    skip = {"friendly_name": "skip ahead", "arguments": condition["arguments"], "type": "equal_to", "value": "2"}
    return [
        Transition("match", names[n + 2], (skip,), odds * 0.35),
        Transition("match", nxt, (condition,), odds * 0.65),
    ]


def build_revisions(
    widgets: Sequence[tuple[str, str]],
    trigger: str,
    count: int,
    dates: Sequence[datetime],
    draft_last: bool,
    phone: str,
    extra_states: int = 0,
    subflow_sid: str | None = None,
) -> tuple[Revision, ...]:
    """Revisions 1..count of a flow; ``dates`` are their creation times, oldest first."""
    out = []
    for number in range(1, count + 1):
        message, design = DESIGNS[min(number, len(DESIGNS)) - 1]
        extra = extra_states if number == count else 0
        states = design_states(widgets, trigger, design, phone, extra, subflow_sid)
        status = "draft" if draft_last and number == count else "published"
        out.append(
            Revision(
                number=number,
                status=status,
                commit_message=message,
                date_created=dates[number - 1],
                states=states,
                description=f"{len(states) - 1} widgets",
                by_name={s.name: s for s in states},
            )
        )
    return tuple(out)


def walk(revision: Revision, trigger: str, rng: random.Random) -> list[tuple[State, str, str]]:
    """The (state executed, event it ended with, next state or ``Ended``) of one engagement."""
    state = revision.by_name[TRIGGER]
    event = TRIGGER_EVENTS[trigger]
    transition = next((t for t in state.transitions if t.event == event), None)
    out: list[tuple[State, str, str]] = []
    while True:
        nxt = transition.next if transition is not None and transition.next else None
        if len(out) + 1 >= MAX_STEPS:
            nxt = None
        out.append((state, event, nxt or ENDED))
        if nxt is None:
            return out
        state = revision.by_name[nxt]
        transition = _choose(state, rng)
        event = transition.event if transition is not None else "next"


def _choose(state: State, rng: random.Random) -> Transition | None:
    """The transition a widget leaves by; the odds pick among several, matches included."""
    if len(state.transitions) <= 1:
        return state.transitions[0] if state.transitions else None
    x = rng.random() * sum(t.odds for t in state.transitions)
    for t in state.transitions:
        x -= t.odds
        if x < 0:
            return t
    return state.transitions[-1]
