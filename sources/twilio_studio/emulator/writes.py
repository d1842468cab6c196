"""The write operations of the Studio API: create, end and delete engagements and executions.

The dataset is a pure function of seed and clock; what clients write is mutable state on top of it,
kept here: runs created through the API (each walks its flow's widgets as the clock advances, like
the dataset's own), runs ended by ``UpdateExecution`` and runs deleted. Engagements and executions are
the same runs seen through two APIs (v1 Engagements, v1/v2 Executions), as in Twilio.

Lists stay ordered newest first across both kinds of run: a listing key is ``index * SLOTS`` for the
dataset's run ``index`` and ``(slot - 1) * SLOTS + n`` for the ``n``-th created run, where ``slot`` is
the first dataset run created at or after it; page tokens anchor on these keys.
"""

from __future__ import annotations

import json
import random
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import orjson

from twilio_studio.emulator.dataset import RETENTION, Dataset, EngagementView, Flow, Script, _hex
from twilio_studio.settings import ERROR_INVALID_PARAMETER

SLOTS = 1 << 20  # created runs per flow the listing keys have room for
# What Studio accepts as a contact or flow address: E.164 numbers, or channel-prefixed addresses
# (client:alice, whatsapp:+1..., messenger:...) and Messaging Service SIDs for From
ADDRESS_RE = re.compile(r"^(\+[1-9][0-9]{6,14}|[a-z]+:[^\s]{1,200}|MG[0-9a-fA-F]{32})$")


class WriteError(Exception):
    """A request the API refuses: the status, Twilio's error code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def bad_request(message: str) -> WriteError:
    """A 400 with Twilio's invalid-parameter code and ``message``."""
    return WriteError(400, ERROR_INVALID_PARAMETER, message)


@dataclass(frozen=True)
class Created:
    """A run created through the API, and where it sits in its flow's lists."""

    script: Script
    key: int
    flow_address: str  # `From`: the flow's channel address for this run


def parse_form(body: bytes) -> dict[str, str]:
    """A form-encoded body as its fields (the last value of a repeated one)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("The request body is not UTF-8 form data") from None
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


def creation_fields(form: dict[str, str]) -> tuple[str, str, dict[str, Any]]:
    """``To``, ``From`` and the parsed ``Parameters`` of a create request; a 400 for what Twilio refuses."""
    for name in ("To", "From"):
        if not form.get(name):
            raise bad_request(f"Missing required parameter {name} in the post body")
    to, from_ = form["To"], form["From"]
    if not ADDRESS_RE.match(to):
        raise WriteError(400, 21211, f"Invalid 'To' Phone Number: {to[:40]}")
    if not ADDRESS_RE.match(from_):
        raise WriteError(400, 21212, f"Invalid 'From' Phone Number: {from_[:40]}")
    raw = form.get("Parameters")
    parameters: Any = {}
    if raw is not None and raw != "":
        try:
            parameters = json.loads(raw)
        except ValueError:
            raise bad_request("Invalid Parameters: not valid JSON; pass a JSON object as a string") from None
        if not isinstance(parameters, dict):
            raise bad_request("Invalid Parameters: must be a JSON object")
    return to, from_, parameters


class Writes:
    """Created, ended and deleted runs of one emulated account; every method is thread-safe."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._lock = threading.Lock()
        self._created: dict[str, dict[str, Created]] = {}  # flow sid -> run sid -> run
        self._by_key: dict[str, dict[int, Created]] = {}
        self._ended: dict[str, datetime] = {}  # run sid -> when UpdateExecution ended it
        self._deleted: set[str] = set()  # dataset runs deleted
        self._count = 0

    # ------------------------------------------------------------ writes
    def create(self, flow: Flow, to: str, from_: str, parameters: dict[str, Any], now: datetime) -> Created:
        """A new active run of ``flow`` for contact ``to``, created at ``now``."""
        d = self.dataset
        sid = "FN" + uuid.uuid4().hex
        rng = random.Random(f"{d.seed}:created:{sid}")
        revision = flow.revision_at(now)  # the revision published now; the REST API's trigger event
        steps = d._make_steps(flow, revision, rng, now, to, False, False, trigger="request")
        script = Script(
            flow=flow,
            index=-1,
            sid=sid,
            contact_sid="FC" + _hex(d.seed, "contact", to),
            address=to,
            date_created=now,
            steps=steps,
            ends_at=steps[-1].at if steps else now,
            null_date_updated=False,
            context_only_on_endpoint=False,
            trigger={"request": {"parameters": parameters}},
            data=parameters,
            flow_version=revision.number,
            initiated_by=d.account_sid,
        )
        slot = d._first_index_at_or_after(flow, now)
        with self._lock:
            self._count += 1
            if self._count >= SLOTS:
                raise WriteError(429, 20429, "Too many engagements created in this emulator")
            run = Created(script, (slot - 1) * SLOTS + self._count, from_)
            self._created.setdefault(flow.sid, {})[sid] = run
            self._by_key.setdefault(flow.sid, {})[run.key] = run
        return run

    def end(self, sid: str, now: datetime) -> None:
        """Marks the run ``sid`` ended at ``now`` (the first end counts)."""
        with self._lock:
            self._ended.setdefault(sid, now)

    def delete(self, flow: Flow, sid: str) -> None:
        """Deletes the run ``sid`` of ``flow``: a created run is forgotten, a dataset run hidden from now on."""
        with self._lock:
            run = self._created.get(flow.sid, {}).pop(sid, None)
            if run is not None:
                del self._by_key[flow.sid][run.key]
            else:
                self._deleted.add(sid)
            self._ended.pop(sid, None)

    # ------------------------------------------------------------ reads
    def is_deleted(self, sid: str) -> bool:
        """Whether the run ``sid`` was deleted."""
        with self._lock:
            return sid in self._deleted

    def created_run(self, flow: Flow, sid: str, now: datetime) -> Created | None:
        """A created run still visible at ``now`` (30 days of retention, like every run)."""
        with self._lock:
            run = self._created.get(flow.sid, {}).get(sid)
        if run is None or now - run.script.date_created >= RETENTION:
            return None
        return run

    def view(
        self,
        script: Script,
        now: datetime,
        flow_address: str | None = None,
        ended_at: dict[str, datetime] | None = None,
    ) -> EngagementView:
        """The run at ``now``: the dataset's view, cut where UpdateExecution ended it.

        ``ended_at`` is a listing's copy of the ended runs, taken once per page: a lock taken for each of a
        page's 1,000 runs made the server's threads queue on it (a lock convoy) when clients read pages at once.
        """
        if ended_at is None:
            with self._lock:
                ended = self._ended.get(script.sid)
        else:
            ended = ended_at.get(script.sid)
        cut = ended if ended is not None and ended < script.ends_at else None
        if cut is not None:
            script = replace(
                script, ends_at=cut, steps=tuple(s for s in script.steps if s.at <= cut), null_date_updated=False
            )
        view = self.dataset.view(script, now)
        if cut is not None:  # the update is its last change
            view.date_updated = cut
        if flow_address is not None:
            view.context["flow"]["channel"] = {"address": flow_address}
        return view

    def listing(
        self, flow: Flow, now: datetime, lo: int, hi: int, since: datetime | None, until: datetime | None
    ) -> tuple[MergedListing, Callable[[int], EngagementView]]:
        """The keys of a flow's visible runs and a function from key to view.

        The visible runs are the dataset's runs ``lo <= i < hi`` and the created ones.
        """
        with self._lock:
            created = sorted(self._by_key.get(flow.sid, {}).items())
            deleted = set(self._deleted)
            ended = dict(self._ended)

        def visible(run: Created) -> bool:
            at = run.script.date_created
            return now - at < RETENTION and (since is None or at >= since) and (until is None or at < until)

        runs = {key: run for key, run in created if visible(run)}
        d = self.dataset

        def render(key: int) -> EngagementView:
            if key % SLOTS == 0:
                return self.view(d.script(flow, key // SLOTS), now, ended_at=ended)
            run = runs[key]
            return self.view(run.script, now, run.flow_address, ended)

        def keep(key: int) -> bool:
            return key % SLOTS != 0 or d.engagement_sid(flow, key // SLOTS) not in deleted

        return MergedListing(lo, hi, sorted(runs), keep if deleted else None), render


class MergedListing:
    """The dataset's runs ``lo <= i < hi`` (keys ``i * SLOTS``) and created runs, newest first.

    The same interface as ``api.Listing``: ``hi`` is above every key, ``below`` and ``above`` scan lazily.
    """

    def __init__(self, lo: int, hi: int, created: list[int], keep: Callable[[int], bool] | None) -> None:
        self.lo, self._hi = lo, hi
        self.created = created  # ascending
        self.keep = keep
        self.hi = max([hi * SLOTS, *(k + 1 for k in created)])

    def _ok(self, key: int) -> bool:
        return self.keep is None or self.keep(key)

    def below(self, key: int) -> Iterator[int]:
        """Keys smaller than ``key``, largest first."""
        i = min(self._hi - 1, (key - 1) // SLOTS)
        created = [k for k in reversed(self.created) if k < key]
        c = 0
        while i >= self.lo or c < len(created):
            if c < len(created) and (i < self.lo or created[c] > i * SLOTS):
                candidate = created[c]
                c += 1
            else:
                candidate = i * SLOTS
                i -= 1
            if self._ok(candidate):
                yield candidate

    def above(self, key: int) -> Iterator[int]:
        """Keys larger than ``key``, smallest first."""
        i = max(self.lo, key // SLOTS + 1)
        created = [k for k in self.created if k > key]
        c = 0
        while i < self._hi or c < len(created):
            if c < len(created) and (i >= self._hi or created[c] < i * SLOTS):
                candidate = created[c]
                c += 1
            else:
                candidate = i * SLOTS
                i += 1
            if self._ok(candidate):
                yield candidate


def dumps(body: Any) -> bytes:
    """JSON of a response body; integers beyond 64 bits (a client's ``Page``) through the stdlib."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, separators=(",", ":")).encode()
