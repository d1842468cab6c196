"""Deterministic Studio data: flows, engagements (executions) and their steps as functions of a clock.

Nothing is stored per engagement. Engagement ``i`` of a flow is derived from ``(seed, flow, i)``:
its creation time grows strictly with ``i``, and its path through the flow's widgets is a fixed
script of timed steps. What the API shows at a given ``now`` (status, date_updated, context, steps)
is that script cut at ``now``, so advancing the clock makes active engagements progress and end,
new ones arrive, and ones older than the retention window disappear, without any mutable state.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import orjson

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
TRIGGER_OF = {"sms_survey": "message", "ivr_menu": "call", "api_notify": "request", "ivr_payment": "call"}
SYNONYMS = ["", "step_", "w_", "node_", "x_"]
DATA_KEYS = {
    "sms_survey": ["campaign", "language", "segments"],
    "ivr_menu": ["queue", "language", "caller_tags"],
    "api_notify": ["order_id", "customer_name", "items", "priority"],
    "ivr_payment": ["charge_amount", "currency", "language"],
}
# what <Pay> answers in `Result` (TwiML <Pay> docs); most payments succeed
PAY_RESULTS = ["success"] * 8 + ["payment-connector-error", "too-many-failed-attempts", "caller-hung-up"]
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
    name: str
    type: str


@dataclass(frozen=True)
class Flow:
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


@dataclass(frozen=True)
class Step:
    sid: str
    widget: Widget
    at: datetime
    transitioned_from: str
    transitioned_to: str
    output: dict[str, Any]


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
    ) -> None:
        if flows < 0 or engagements_per_flow < 0 or payment_flows < 0:
            raise ValueError("flows, engagements_per_flow and payment_flows must be zero or more")
        self.seed = seed
        self.account_sid = account_sid or DEFAULT_ACCOUNT_SID
        self.start = start
        self.long_running_share = long_running_share
        self.context_padding = context_padding
        if context_shape not in CONTEXT_SHAPES:
            raise ValueError(f"context_shape must be one of {', '.join(CONTEXT_SHAPES)}")
        self.context_shape = context_shape
        span_s = int(min(span, RETENTION - timedelta(days=1)).total_seconds())
        spacing = max(1, span_s // max(1, engagements_per_flow))
        self.flows: list[Flow] = [self._make_flow(i, spacing, engagements_per_flow) for i in range(flows)]
        # flows with a Capture Payments widget come after the others, so adding them changes no other flow
        self.flows += [
            self._make_flow(flows + j, spacing, engagements_per_flow, PAYMENT_TEMPLATE, j) for j in range(payment_flows)
        ]
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
        widgets = tuple(Widget(f"{prefix}{name}{suffix}", wtype) for name, wtype in WIDGET_CATALOGUE[template])
        keys = tuple(f"{prefix}{k}{suffix}" for k in DATA_KEYS[template])
        created = self.start - timedelta(days=200 - i)
        return Flow(
            index=i,
            sid="FW" + _hex(self.seed, "flow", i),
            friendly_name=f"{template.replace('_', ' ').title()} #{i + 1}",
            template=template,
            widgets=widgets,
            data_keys=keys,
            phone=f"+1555{(self.seed * 7919 + i) % 10_000_000:07d}",
            date_created=created,
            date_updated=created + timedelta(days=3, hours=i),
            version=1 + i % 5,
            status="published" if i % 7 != 6 else "draft",
            spacing=spacing,
            base=self.start - timedelta(seconds=spacing * count),
        )

    # ----------------------------------------------------------- engagements
    def created_at(self, flow: Flow, i: int) -> datetime:
        jitter = int(_hex(self.seed, flow.index, i, "jitter", n=8), 16) % flow.spacing
        return flow.base + timedelta(seconds=i * flow.spacing + jitter)

    def index_range(self, flow: Flow, now: datetime) -> tuple[int, int]:
        """The indices ``lo <= i < hi`` of the engagements visible at ``now``."""
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
        steps = self._make_steps(flow, i, rng, created, address, instant, long_running)
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
            flow_version=flow.version,
            initiated_by=address if flow.template != "api_notify" else "US" + _hex(flow.sid),
            extra_leaves=self.context_padding,
        )

    def _make_steps(
        self,
        flow: Flow,
        i: int,
        rng: random.Random,
        created: datetime,
        address: str,
        instant: bool,
        long_running: bool,
    ) -> tuple[Step, ...]:
        path: list[Widget] = []
        for w in flow.widgets:
            path.append(w)
            # callers drop out along the way: a funnel that differs by widget
            if w.type in ("send-and-wait-for-reply", "gather-input-on-call") and rng.random() < 0.2:
                break
            if w.type == "split-based-on" and rng.random() < 0.1:
                break
        t = created
        steps: list[Step] = []
        previous = "Trigger"
        for n, w in enumerate(path):
            if not instant:
                wait = rng.randint(1, 40)
                if w.type == "send-and-wait-for-reply" and long_running:
                    wait = rng.randint(3_600, 5 * 86_400)  # replies that come hours or days later
                t = t + timedelta(seconds=wait)
            nxt = path[n + 1].name if n + 1 < len(path) else "Ended"
            steps.append(
                Step(
                    sid="FT" + _rhex(rng),
                    widget=w,
                    at=t,
                    transitioned_from=previous,
                    transitioned_to=nxt,
                    output=self._widget_output(w, rng, address, flow, n),
                )
            )
            previous = w.name
        return tuple(steps)

    def _widget_output(self, w: Widget, rng: random.Random, address: str, flow: Flow, n: int) -> dict[str, Any]:
        sm = "SM" + _rhex(rng)
        if w.type == "send-message":
            return {"sid": sm, "status": rng.choice(["sent", "delivered", "queued"]), "to": address}
        if w.type == "send-and-wait-for-reply":
            return {
                "outbound": {"Body": f"Question {n}?", "Status": "sent", "Sid": sm, "To": address},
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
            if rng.random() < 0.7:
                out["Digits"] = str(rng.randint(1, 4))
            else:
                out["SpeechResult"] = rng.choice(["billing", "support", "agent please", "cancel"])
                out["Confidence"] = round(rng.uniform(0.5, 0.99), 2)
            return out
        if w.type == "split-based-on":
            return {}
        if w.type == "make-http-request":
            status = 200 if rng.random() < 0.9 else rng.choice([404, 500])
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
                "status_code": status,
                "content_type": "application/json",
                "body": body,
                "parsed": parsed,
            }
        if w.type == "run-function":
            return {
                "status_code": 200,
                "content_type": "application/json",
                "body": '{"ok": true}',
                "parsed": {"ok": True, "ticket": f"T-{rng.randint(1, 99999)}"},
            }
        if w.type == "set-variables":
            return {}
        if w.type == "capture-payments":
            return self._payment_output(rng)
        if w.type == "connect-call-to":
            return {
                "DialCallStatus": rng.choice(["completed", "no-answer", "busy"]),
                "DialCallDuration": str(rng.randint(5, 900)),
                "DialCallSid": "CA" + _rhex(rng),
            }
        if w.type == "record-voicemail":
            return {
                "RecordingUrl": "https://api.twilio.com/recordings/RE" + _rhex(rng),
                "RecordingDuration": str(rng.randint(2, 120)),
            }
        return {}  # say-play and others leave no output

    @staticmethod
    def _payment_output(rng: random.Random) -> dict[str, Any]:
        """What Capture Payments (TwiML <Pay> with a Stripe connector) writes: card data included."""
        result = rng.choice(PAY_RESULTS)
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
        flow = script.flow
        widgets: dict[str, Any] = {}
        variables: dict[str, Any] = {}
        for s in done:
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
