"""Deterministic Studio data: flows, engagements (executions) and their steps as functions of a clock.

Nothing is stored per engagement. Engagement ``i`` of a flow is derived from ``(seed, flow, i)``:
its creation time grows strictly with ``i``, and its path through the flow's widgets is a fixed
script of timed steps. What the API shows at a given ``now`` (status, date_updated, context, steps)
is that script cut at ``now``, so advancing the clock makes active engagements progress and end,
new ones arrive, and ones older than the retention window disappear, without any mutable state.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import orjson

from twilio_studio.emulator.definitions import TRIGGER, Revision, build_revisions, walk
from twilio_studio.emulator.traffic import Shape, shaped_counts

RETENTION = timedelta(days=30)
MAX_ACTIVE = timedelta(days=30)  # an execution ends after 30 days at the most
DEFAULT_ACCOUNT_SID = "AC" + "a" * 32  # as in Twilio's own examples; see Credentials
DEFAULT_START = datetime(2026, 3, 2, 12, 0, 0, tzinfo=timezone.utc)

WIDGET_CATALOGUE: dict[str, list[tuple[str, str]]] = {
    # template -> ordered widgets (base name, widget type); variants rename them per flow
    "sms_survey": [
        ("greeting", "send-message"),
        ("ask_rating", "send-and-wait-for-reply"),
        ("check_rating", "split-based-on"),
        ("lookup_customer", "make-http-request"),
        ("save_answers", "set-variables"),
        ("ask_comment", "send-and-wait-for-reply"),
        ("record_feedback", "run-function"),
        ("thank_you", "send-message"),
    ],
    "ivr_menu": [
        ("welcome", "say-play"),
        ("main_menu", "gather-input-on-call"),
        ("route_choice", "split-based-on"),
        ("account_lookup", "make-http-request"),
        ("set_caller", "set-variables"),
        ("connect_agent", "connect-call-to"),
        ("voicemail", "record-voicemail"),
    ],
    "api_notify": [
        ("fetch_order", "make-http-request"),
        ("notify_customer", "send-message"),
        ("wait_confirmation", "send-and-wait-for-reply"),
        ("confirm_split", "split-based-on"),
        ("update_order", "run-function"),
        ("remember_choice", "set-variables"),
    ],
    # only in the ``payment_flows`` flows, after the rotation of the three above
    "ivr_payment": [
        ("pay_welcome", "say-play"),
        ("take_payment", "capture-payments"),
        ("payment_result", "split-based-on"),
        ("pay_goodbye", "say-play"),
    ],
}
TEMPLATES = ("sms_survey", "ivr_menu", "api_notify")  # the rotation of ``flows``
PAYMENT_TEMPLATE = "ivr_payment"
TRIGGER_OF = {
    "sms_survey": "message", "ivr_menu": "call", "api_notify": "request", "ivr_payment": "call", "subflow": "parent",
}  # fmt: skip
# Dataset(subflow=True): api_notify flows run this subflow after notifying the customer
SUBFLOW_WIDGETS = (("sms_receipt", "send-message"), ("log_delivery", "make-http-request"))
RUN_SUBFLOW = ("notify_subflow", "run-subflow")
SYNONYMS = ["", "step_", "w_", "node_", "x_"]
DATA_KEYS = {
    "sms_survey": ["campaign", "language", "segments"],
    "ivr_menu": ["queue", "language", "caller_tags"],
    "api_notify": ["order_id", "customer_name", "items", "priority"],
    "ivr_payment": ["charge_amount", "currency", "language"],
}
# what <Pay> answers in `Result` (TwiML <Pay> docs) for the widget's event; most payments succeed (EVENTS)
PAY_RESULT_OF_EVENT = {
    "success": "success", "maxFailedAttempts": "too-many-failed-attempts", "providerError": "payment-connector-error",
    "payInterrupted": "caller-interrupted-with-star", "hangup": "caller-hung-up", "validationError": "validation-error",
}  # fmt: skip
CARD_TYPES = ["visa", "mastercard", "amex", "discover"]
ANSWERS = ["1", "2", "3", "4", "5", "yes", "no", "STOP", "Great service 👍", "خدمة ممتازة", "later"]
TIERS = ["gold", "silver", "bronze"]
# How much a context holds (benchmarks): ~5 child rows per engagement, the default (~18), or heavy
# (~40: arrays of maps in widget outputs and flow.data, as large HTTP bodies and carts give)
CONTEXT_SHAPES = ("light", "default", "heavy")


def _hex(*parts: object, n: int = 32) -> str:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=16).hexdigest()
    return digest[:n]


def _rhex(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def iso(ts: datetime | None) -> str | None:
    """Formats a time as Twilio does: ISO 8601 UTC with seconds and a Z."""
    return None if ts is None else ts.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Widget:
    """A widget of a flow: its name and type."""

    name: str
    type: str


@dataclass(frozen=True)
class Flow:
    """A generated flow: its widgets, data keys, phone number, dates, revisions and run spacing."""

    index: int
    sid: str
    friendly_name: str
    template: str
    widgets: tuple[Widget, ...]
    data_keys: tuple[str, ...]
    phone: str
    date_created: datetime
    date_updated: datetime
    version: int
    status: str
    spacing: int  # seconds between two engagements' creation times
    base: datetime  # creation time of engagement 0 is in [base, base + spacing)
    revisions: tuple[Revision, ...] = ()  # revision n is revisions[n - 1]
    published: tuple[Revision, ...] = ()  # the published ones, oldest first

    def revision_at(self, ts: datetime) -> Revision:
        """The revision published at ``ts`` (the one an engagement created then runs)."""
        n = bisect.bisect_right([r.date_created for r in self.published], ts)
        return self.published[max(0, n - 1)]


@dataclass(frozen=True)
class Step:
    """One step as Twilio records it: ``widget`` ran (``Trigger`` first), ended with ``event``."""

    sid: str
    widget: Widget  # the widget executed: the step's transitioned_from and type
    at: datetime
    event: str  # the step's name
    transitioned_to: str  # the next widget, or "Ended"
    output: dict[str, Any]
    parent_step_sid: str | None = None  # a subflow's step: the parent's run-subflow step

    @property
    def transitioned_from(self) -> str:
        """The widget the step ran."""
        return self.widget.name


@dataclass(frozen=True)
class Script:
    """Everything an engagement will ever be, independent of the clock."""

    flow: Flow
    index: int
    sid: str
    contact_sid: str
    address: str
    date_created: datetime
    steps: tuple[Step, ...]
    ends_at: datetime
    null_date_updated: bool  # as in Twilio's own examples: ended, date_updated null
    context_only_on_endpoint: bool  # list and fetch show `context: {}`
    trigger: dict[str, Any]
    data: dict[str, Any]
    flow_version: int
    initiated_by: str
    extra_leaves: int = 0


@dataclass
class EngagementView:
    """An engagement as the API shows it at one moment."""

    script: Script
    status: str
    date_updated: datetime | None
    steps: tuple[Step, ...]
    context: dict[str, Any] = field(default_factory=dict)


class Dataset:
    """The emulated account: N flows x M engagements, derived from a seed."""

    def __init__(
        self,
        seed: int = 7,
        flows: int = 3,
        engagements_per_flow: int = 200,
        account_sid: str | None = None,
        start: datetime = DEFAULT_START,
        span: timedelta = timedelta(days=7),
        long_running_share: float = 0.15,
        context_padding: int = 0,
        context_shape: str = "default",
        payment_flows: int = 0,
        extra_states: int = 0,
        traffic: str = "flat",
        subflow: bool = False,
    ) -> None:
        if flows < 0 or engagements_per_flow < 0 or payment_flows < 0:
            raise ValueError("flows, engagements_per_flow and payment_flows must be zero or more")
        if traffic not in ("flat", "shaped"):
            raise ValueError(f"traffic must be 'flat' or 'shaped', got {traffic!r}")
        self.traffic = traffic
        self.seed = seed
        self.account_sid = account_sid or DEFAULT_ACCOUNT_SID
        self.start = start
        self.long_running_share = long_running_share
        self.context_padding = context_padding
        self.extra_states = extra_states  # unreachable widgets added to every flow's latest revision
        if context_shape not in CONTEXT_SHAPES:
            raise ValueError(f"context_shape must be one of {', '.join(CONTEXT_SHAPES)}")
        self.context_shape = context_shape
        span_s = int(min(span, RETENTION - timedelta(days=1)).total_seconds())
        spacing = max(1, span_s // max(1, engagements_per_flow))
        counts = [engagements_per_flow] * (flows + payment_flows)
        if traffic == "shaped":  # flows differ tenfold in volume; the total stays the same
            counts = shaped_counts(flows + payment_flows, engagements_per_flow)
        self._shapes: dict[int, Shape] = {}
        self.flows: list[Flow] = []
        # a subflow is one more flow of the account; it runs only inside its parents (no engagements of its own)
        self._subflow_sid = "FW" + _hex(self.seed, "subflow") if subflow else None
        for i, count in enumerate(counts):
            if traffic == "shaped":
                spacing = max(1, span_s // max(1, count))
            if i < flows:
                self.flows.append(self._make_flow(i, spacing, count))
            else:  # flows with a Capture Payments widget come after the others, so adding them changes no other flow
                self.flows.append(self._make_flow(i, spacing, count, PAYMENT_TEMPLATE, i - flows))
        self.subflow: Flow | None = self._make_subflow(len(self.flows)) if subflow else None
        if self.subflow is not None:
            self.flows.append(self.subflow)
        self.flows_by_sid = {f.sid: f for f in self.flows}
        self._script = lru_cache(maxsize=8192)(self._make_script)

    # ----------------------------------------------------------------- flows
    def _make_flow(
        self, i: int, spacing: int, count: int, template: str | None = None, variant: int | None = None
    ) -> Flow:
        template = template or TEMPLATES[i % len(TEMPLATES)]
        variant = i // len(TEMPLATES) if variant is None else variant
        prefix = SYNONYMS[variant % len(SYNONYMS)]
        suffix = "" if variant < len(SYNONYMS) else f"_{variant}"
        catalogue = list(WIDGET_CATALOGUE[template])
        if self._subflow_sid is not None and template == "api_notify":
            catalogue.insert(2, RUN_SUBFLOW)
        widgets = tuple(Widget(f"{prefix}{name}{suffix}", wtype) for name, wtype in catalogue)
        keys = tuple(f"{prefix}{k}{suffix}" for k in DATA_KEYS[template])
        created = self.start - timedelta(days=200 - i)
        base = self.start - timedelta(seconds=spacing * count)
        if self.traffic == "shaped":
            self._shapes[i] = Shape(self.seed, i, TRIGGER_OF[template], base, self.start, count)
        revisions = self._make_revisions(i, template, widgets, created, base, spacing * count)
        return Flow(
            index=i,
            sid="FW" + _hex(self.seed, "flow", i),
            friendly_name=f"{template.replace('_', ' ').title()} #{i + 1}",
            template=template,
            widgets=widgets,
            data_keys=keys,
            phone=f"+1555{(self.seed * 7919 + i) % 10_000_000:07d}",
            date_created=created,
            date_updated=revisions[-1].date_created,
            version=len(revisions),
            status=revisions[-1].status,
            spacing=spacing,
            base=base,
            revisions=revisions,
            published=tuple(r for r in revisions if r.status == "published"),
        )

    def _make_revisions(
        self, i: int, template: str, widgets: tuple[Widget, ...], created: datetime, base: datetime, window: int
    ) -> tuple[Revision, ...]:
        """4 or 5 revisions; the last two published ones fall inside the engagements' window."""
        count = 4 + i % 2
        draft = i % 7 == 6  # as before: one flow in seven is a draft (its last revision unpublished)
        published = count - 1 if draft else count
        window = max(window, 3600)
        dates = [created + timedelta(days=7 * k, hours=i) for k in range(published - 2)]
        dates += [base + timedelta(seconds=window * 0.25), base + timedelta(seconds=window * 0.6)]
        if draft:
            dates.append(base + timedelta(seconds=window * 0.8))
        phone = f"+1555{(self.seed * 7919 + i) % 10_000_000:07d}"
        return build_revisions(
            [(w.name, w.type) for w in widgets], TRIGGER_OF[template], count, dates, draft, phone, self.extra_states,
            self._subflow_sid,
        )  # fmt: skip

    def _make_subflow(self, i: int) -> Flow:
        created = self.start - timedelta(days=250)
        widgets = tuple(Widget(name, wtype) for name, wtype in SUBFLOW_WIDGETS)
        phone = f"+1555{(self.seed * 7919 + i) % 10_000_000:07d}"
        revisions = build_revisions([(w.name, w.type) for w in widgets], "parent", 1, [created], False, phone)
        return Flow(
            index=i, sid=self._subflow_sid or "", friendly_name="Notify Subflow", template="subflow",
            widgets=widgets, data_keys=(), phone=phone, date_created=created, date_updated=created,
            version=1, status="published", spacing=1, base=self.start, revisions=revisions, published=revisions,
        )  # fmt: skip

    # ----------------------------------------------------------- engagements
    def created_at(self, flow: Flow, i: int) -> datetime:
        """When the ``i``-th engagement of ``flow`` was created."""
        shape = self._shapes.get(flow.index)
        if shape is not None:
            return shape.created_at(i)
        jitter = int(_hex(self.seed, flow.index, i, "jitter", n=8), 16) % flow.spacing
        return flow.base + timedelta(seconds=i * flow.spacing + jitter)

    def index_range(self, flow: Flow, now: datetime) -> tuple[int, int]:
        """The indices ``lo <= i < hi`` of the engagements visible at ``now``."""
        if flow.template == "subflow":
            return 0, 0
        hi = self._first_index_at_or_after(flow, now)
        lo = self._first_index_at_or_after(flow, now - RETENTION)
        return lo, max(lo, hi)

    def indices_created_between(
        self, flow: Flow, now: datetime, since: datetime | None, until: datetime | None
    ) -> tuple[int, int]:
        """Visible indices whose date_created is in ``[since, until)``."""
        lo, hi = self.index_range(flow, now)
        if since is not None:
            lo = max(lo, self._first_index_at_or_after(flow, since))
        if until is not None:
            hi = min(hi, self._first_index_at_or_after(flow, until))
        return lo, max(lo, hi)

    def _first_index_at_or_after(self, flow: Flow, ts: datetime) -> int:
        """Smallest i whose creation time is >= ts (creation time grows strictly with i)."""
        shape = self._shapes.get(flow.index)
        if shape is not None:
            return shape.first_index_at_or_after(ts)
        offset = (ts - flow.base).total_seconds()
        if offset <= 0:
            return 0
        i = int(offset // flow.spacing)  # created_at(i) is within a spacing of this guess
        while i > 0 and self.created_at(flow, i - 1) >= ts:
            i -= 1
        while self.created_at(flow, i) < ts:
            i += 1
        return i

    def engagement_sid(self, flow: Flow, i: int) -> str:
        """The SID of the ``i``-th engagement of ``flow``."""
        # the tail encodes (flow, index) so a fetch by SID needs no search; the head is a hash
        return "FN" + _hex(self.seed, "engagement", flow.index, i, n=16) + f"{flow.index:06x}{i:010x}"

    def locate(self, flow: Flow, sid: str) -> int | None:
        """The index of the engagement with this SID in this flow, if it ever exists."""
        try:
            flow_index, i = int(sid[18:24], 16), int(sid[24:34], 16)
        except ValueError:
            return None
        if flow_index != flow.index or self.engagement_sid(flow, i) != sid:
            return None
        return i

    def script(self, flow: Flow, i: int) -> Script:
        """The whole run of the ``i``-th engagement of ``flow``: its steps and when it ends."""
        return self._script(flow.index, i)

    def _make_script(self, flow_index: int, i: int) -> Script:
        flow = self.flows[flow_index]
        rng = random.Random(f"{self.seed}:{flow.index}:{i}")
        created = self.created_at(flow, i)
        address = (
            f"+1{rng.randint(200, 999)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
            if flow.template != "ivr_menu" or rng.random() < 0.8
            else f"client:agent_{rng.randint(1, 99)}"
        )
        instant = flow.template == "api_notify" and rng.random() < 0.05
        long_running = not instant and rng.random() < self.long_running_share
        revision = flow.revision_at(created)
        steps = self._make_steps(flow, revision, rng, created, address, instant, long_running)
        ends_at = steps[-1].at if steps else created
        if long_running:
            ends_at = min(ends_at, created + MAX_ACTIVE)
        data = self._make_data(flow, rng)
        trigger = self._make_trigger(flow, rng, address, created, data)
        return Script(
            flow=flow,
            index=i,
            sid=self.engagement_sid(flow, i),
            contact_sid="FC" + _hex(self.seed, "contact", address),
            address=address,
            date_created=created,
            steps=steps,
            ends_at=ends_at,
            null_date_updated=instant,
            context_only_on_endpoint=i % 20 == 7,  # exactly one in twenty, in every flow
            trigger=trigger,
            data=data,
            flow_version=revision.number,
            initiated_by=address if flow.template != "api_notify" else "US" + _hex(flow.sid),
            extra_leaves=self.context_padding,
        )

    def _make_steps(
        self,
        flow: Flow,
        revision: Revision,
        rng: random.Random,
        created: datetime,
        address: str,
        instant: bool,
        long_running: bool,
        trigger: str | None = None,
    ) -> tuple[Step, ...]:
        """The revision's walk as timed steps: the trigger at creation, each widget some seconds later.

        ``trigger`` is how it started (``request``: the REST API); by default the flow's own channel.
        """
        t = created
        steps: list[Step] = []
        for n, (state, event, nxt) in enumerate(walk(revision, trigger or TRIGGER_OF[flow.template], rng)):
            widget = Widget(state.name, state.type)
            if n and not instant:
                wait = rng.randint(1, 40)
                if state.type == "send-and-wait-for-reply" and long_running:
                    wait = rng.randint(3_600, 5 * 86_400)  # replies that come hours or days later
                t = t + timedelta(seconds=wait)
            if state.type == "run-subflow" and self.subflow is not None:
                t = self._subflow_steps(steps, widget, event, nxt, t, rng, address, flow, instant)
                continue
            output = {} if state.name == TRIGGER else self._widget_output(widget, rng, address, flow, n, event)
            steps.append(
                Step(sid="FT" + _rhex(rng), widget=widget, at=t, event=event, transitioned_to=nxt, output=output)
            )
        return tuple(steps)

    def _subflow_steps(
        self,
        steps: list[Step],
        widget: Widget,
        event: str,
        nxt: str,
        t: datetime,
        rng: random.Random,
        address: str,
        flow: Flow,
        instant: bool,
    ) -> datetime:
        """The subflow's walk (its steps name the run-subflow step as parent), then the widget's own step."""
        assert self.subflow is not None
        parent_sid = "FT" + _rhex(rng)
        for n, (state, sub_event, sub_next) in enumerate(walk(self.subflow.revisions[-1], "parent", rng)):
            sub_widget = Widget(state.name, state.type)
            if not instant:
                t = t + timedelta(seconds=rng.randint(1, 5))
            output = {} if state.name == TRIGGER else self._widget_output(sub_widget, rng, address, flow, n, sub_event)
            steps.append(Step("FT" + _rhex(rng), sub_widget, t, sub_event, sub_next, output, parent_sid))
        if not instant:
            t = t + timedelta(seconds=1)  # the widget's step follows its subflow's end
        steps.append(Step(parent_sid, widget, t, event, nxt, {"flow_sid": self.subflow.sid, "status": event}))
        return t

    def _widget_output(  # noqa: C901 - a flat branch per widget type, as the widget library lists them
        self, w: Widget, rng: random.Random, address: str, flow: Flow, n: int, event: str
    ) -> dict[str, Any]:
        """What a widget leaves in the context, given the event it ended with."""
        sm = "SM" + _rhex(rng)
        if w.type == "send-message":
            status = "failed" if event == "failed" else rng.choice(["sent", "delivered", "queued"])
            return {"sid": sm, "status": status, "to": address}
        if w.type == "send-and-wait-for-reply":
            outbound = {"Body": f"Question {n}?", "Status": "sent", "Sid": sm, "To": address}
            if event != "incomingMessage":  # timeout, deliveryFailure: no reply came
                return {"outbound": {**outbound, "Status": "undelivered" if event == "deliveryFailure" else "sent"}}
            return {
                "outbound": outbound,
                "inbound": {
                    "Body": rng.choice(ANSWERS),
                    "From": address,
                    "To": flow.phone,
                    "MessageSid": "SM" + _rhex(rng),
                    "NumMedia": "0",
                },
            }
        if w.type == "gather-input-on-call":
            out: dict[str, Any] = {"CallSid": "CA" + _rhex(rng), "FinishedOnKey": ""}
            if event == "keypress":
                out["Digits"] = str(rng.randint(1, 4))
            elif event == "speech":
                out["SpeechResult"] = rng.choice(["billing", "support", "agent please", "cancel"])
                out["Confidence"] = round(rng.uniform(0.5, 0.99), 2)
            return out
        if w.type == "split-based-on":
            return {}
        if w.type == "make-http-request":
            code = 200 if event == "success" else rng.choice([404, 500])
            parsed = {
                "customer": {
                    "id": rng.randint(1000, 99999),
                    "tier": rng.choice(TIERS),
                    "tags": rng.sample(["new", "vip", "churn_risk", "b2b", "promo"], k=2),
                    "active": rng.random() < 0.8,
                },
                "orders": [
                    {"id": f"o{rng.randint(1, 9999)}", "total": round(rng.uniform(5, 500), 2)}
                    for _ in range(rng.randint(0, 3))
                ],
            }
            body = orjson.dumps(parsed).decode()
            return {
                "status_code": code,
                "content_type": "application/json",
                "body": body,
                "parsed": parsed,
            }
        if w.type == "run-function":
            if event == "failed":
                return {"status_code": 500, "content_type": "text/plain", "body": "function error"}
            return {
                "status_code": 200,
                "content_type": "application/json",
                "body": '{"ok": true}',
                "parsed": {"ok": True, "ticket": f"T-{rng.randint(1, 99999)}"},
            }
        if w.type == "set-variables":
            return {}
        if w.type == "capture-payments":
            return self._payment_output(rng, event)
        if w.type == "connect-call-to":
            return {
                "DialCallStatus": "completed" if event == "callCompleted" else rng.choice(["no-answer", "busy"]),
                "DialCallDuration": str(rng.randint(5, 900)),
                "DialCallSid": "CA" + _rhex(rng),
            }
        if w.type == "record-voicemail":
            if event != "recordingComplete":
                return {}
            return {
                "RecordingUrl": "https://api.twilio.com/recordings/RE" + _rhex(rng),
                "RecordingDuration": str(rng.randint(2, 120)),
            }
        return {}  # say-play and others leave no output

    @staticmethod
    def _payment_output(rng: random.Random, event: str) -> dict[str, Any]:
        """What Capture Payments (TwiML <Pay> with a Stripe connector) writes: card data included."""
        result = PAY_RESULT_OF_EVENT.get(event, "payment-connector-error")
        if result != "success":
            return {"Result": result, "PaymentError": "", "PayErrorCode": str(rng.choice([0, 64002, 64011]))}
        return {
            "Result": result,
            "PaymentCardNumber": f"xxxx-xxxx-xxxx-{rng.randint(0, 9999):04d}",
            "PaymentCardType": rng.choice(CARD_TYPES),
            "ExpirationDate": f"{rng.randint(1, 12):02d}{rng.randint(27, 35)}",
            "SecurityCode": "xxx",
            "PaymentCardPostalCode": f"{rng.randint(10000, 99999)}",
            "PaymentToken": "tok_" + _rhex(rng)[:24],
            "PaymentConfirmationCode": "ch_" + _rhex(rng)[:24],
            "ProfileId": "",
        }

    def _make_data(self, flow: Flow, rng: random.Random) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for k in flow.data_keys:
            base = k.split("_", 1)[-1] if k.startswith(("step_", "w_", "node_", "x_")) else k
            if "order_id" in base:
                values[k] = f"ORD-{rng.randint(1, 99999)}"
            elif "items" in base or "segments" in base or "tags" in base:
                values[k] = [
                    {"sku": f"SKU{rng.randint(1, 50)}", "qty": rng.randint(1, 3)}
                    if "items" in base
                    else rng.choice(["a", "b", "c", "d"])
                    for _ in range(rng.randint(1, 3))
                ]
            elif "priority" in base:
                values[k] = rng.choice(["high", "normal", "low"])
            elif "language" in base:
                values[k] = rng.choice(["en-US", "es-ES", "ar-EG", "de-DE"])
            elif "queue" in base:
                values[k] = rng.choice(["billing", "support", "sales"])
            elif "charge_amount" in base:
                values[k] = f"{rng.randint(5, 500)}.{rng.randint(0, 99):02d}"
            elif "currency" in base:
                values[k] = "usd"
            elif "campaign" in base:
                values[k] = rng.choice(["spring", "nps_q2", "winback"])
            else:
                values[k] = rng.choice(["Ana", "Bo", "Chen", "Dara"]) if rng.random() < 0.9 else None
        return values

    def _make_trigger(
        self, flow: Flow, rng: random.Random, address: str, created: datetime, data: dict[str, Any]
    ) -> dict[str, Any]:
        kind = TRIGGER_OF[flow.template]
        if kind == "message":
            return {
                "message": {
                    "Body": rng.choice(["hi", "START", "feedback", "hola"]),
                    "From": address,
                    "To": flow.phone,
                    "MessageSid": "SM" + _rhex(rng),
                    "AccountSid": self.account_sid,
                    "ChannelMetadata": {"type": "sms", "data": {"from": address}},
                }
            }
        if kind == "call":
            return {
                "call": {
                    "CallSid": "CA" + _rhex(rng),
                    "From": address,
                    "To": flow.phone,
                    "CallStatus": "ringing",
                    "Direction": "inbound",
                    "FromCountry": "US",
                    "AccountSid": self.account_sid,
                }
            }
        return {"request": {"parameters": dict(data)}}

    # ---------------------------------------------------------------- views
    def view(self, script: Script, now: datetime) -> EngagementView:
        """The engagement as the API shows it at ``now``: its status, date_updated, steps so far and context."""
        done = tuple(s for s in script.steps if s.at <= now)
        ended = now >= script.ends_at
        if ended:
            done = tuple(s for s in script.steps if s.at <= script.ends_at)
        status = "ended" if ended else "active"
        if script.null_date_updated and ended:
            updated: datetime | None = None
        else:
            updated = done[-1].at if done else script.date_created
        return EngagementView(
            script=script,
            status=status,
            date_updated=updated,
            steps=done,
            context=self.context(script, done),
        )

    def context(self, script: Script, done: tuple[Step, ...]) -> dict[str, Any]:
        """The engagement's context after the steps ``done``: trigger, widgets' outputs and flow variables."""
        flow = script.flow
        widgets: dict[str, Any] = {}
        variables: dict[str, Any] = {}
        for s in done:
            if s.widget.name == TRIGGER or s.parent_step_sid is not None:
                continue  # the trigger's payload is the context's `trigger`; a subflow's widgets are its own
            widgets[s.widget.name] = s.output
            if s.widget.type == "set-variables":
                variables = {
                    f"{flow.widgets[0].name.split('_')[0]}_score": len(done),
                    "segment": "vip" if len(done) % 3 == 0 else "standard",
                    "answered": [x.widget.name for x in done if x.output][:3],
                }
        channel = {"address": flow.phone}
        ctx: dict[str, Any] = {
            "flow": {
                "flow_sid": flow.sid,
                "channel": channel,
                "sid": script.sid,
                "data": script.data,
                "variables": variables,
            },
            "contact": {"channel": {"address": script.address}},
            "trigger": script.trigger,
            "widgets": widgets,
        }
        if self.context_shape != "default":
            reshape(ctx, self.context_shape, random.Random(f"{self.seed}:{flow.index}:{script.index}:shape"))
        if script.extra_leaves:
            ctx["flow"]["data"] = dict(ctx["flow"]["data"])
            ctx["flow"]["data"]["notes"] = [
                {"line": n, "text": f"note {n} for {script.index}"} for n in range(script.extra_leaves)
            ]
        return ctx


def _scalars_only(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scalars_only(v) for k, v in value.items() if not isinstance(v, list)}
    return value


def reshape(ctx: dict[str, Any], shape: str, rng: random.Random) -> None:
    """Makes a context ``light`` or ``heavy`` in place (see CONTEXT_SHAPES); deterministic by ``rng``."""
    flow = ctx["flow"]
    if shape == "light":
        ctx["widgets"] = {k: _scalars_only(v) for k, v in list(ctx["widgets"].items())[:2]}
        data = {k: v for k, v in flow["data"].items() if not isinstance(v, list)}
        flow["data"] = dict(list(data.items())[:2])
        flow["variables"] = {"segment": "standard"} if flow["variables"] else {}
        return
    widgets = {}
    for name, output in ctx["widgets"].items():
        output = dict(output)
        if "parsed" in output:
            output["parsed"] = dict(output["parsed"])
            output["parsed"]["items"] = [
                {"sku": f"SKU{rng.randint(1, 500)}", "qty": rng.randint(1, 5), "price": round(rng.uniform(1, 200), 2)}
                for _ in range(3)
            ]
        widgets[name] = output
    ctx["widgets"] = widgets
    flow["data"] = {
        **flow["data"],
        "cart": [
            {"sku": f"SKU{rng.randint(1, 500)}", "qty": rng.randint(1, 3), "price": rng.randint(1, 99)}
            for _ in range(3)
        ],
        "profile": {"tier": rng.choice(TIERS), "languages": rng.sample(["en", "es", "ar", "de"], k=2)},
    }
    flow["variables"] = {
        **flow["variables"],
        "attempts": rng.randint(1, 3),
        "channel": rng.choice(["sms", "voice"]),
        "opted_in": rng.random() < 0.7,
        "last_intent": rng.choice(["billing", "support", None]),
    }
