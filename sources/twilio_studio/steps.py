"""A parent's steps in the order the flow walked them: ``step_index`` and ``dwell_seconds``.

Pure functions, no I/O. Twilio's step dates are whole seconds, so steps of one engagement often
share a ``date_created``. Order: by ``date_created``; among steps created in the same second, the
chain decides (a step whose ``transitioned_from`` is the widget the previous step went to comes
next; otherwise one that no other tied step leads to; a run-subflow widget's step after the steps
of its subflow, which name it in ``parent_step_sid``); what the chain leaves open goes in the
reverse of the list's order (Twilio lists steps newest first).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

ENDED = "Ended"  # a step's transitioned_to where the engagement ended


def _chain(tied: list[dict[str, Any]], previous_to: str | None) -> list[dict[str, Any]]:
    """Steps created in the same second, ordered by following transitioned_from -> transitioned_to."""
    remaining = list(tied)
    out: list[dict[str, Any]] = []
    while remaining:
        # a run-subflow widget's step comes after every step of its subflow (they name it as their parent)
        parents = {p for s in remaining if (p := s.get("parent_step_sid"))}
        ready = [s for s in remaining if s.get("sid") not in parents] or remaining
        pick = next((s for s in ready if previous_to is not None and s.get("widget") == previous_to), None)
        if pick is None:
            targets = {s.get("transitioned_to") for s in remaining}
            pick = next((s for s in ready if s.get("widget") not in targets), ready[0])
        remaining.remove(pick)
        out.append(pick)
        previous_to = pick.get("transitioned_to")
    return out


def _utc(value: datetime | None) -> datetime | None:
    """A naive UTC time, comparable whether or not the step's date carried a zone."""
    if value is None:
        return None
    return value.replace(tzinfo=None) - (value.utcoffset() or timedelta(0))


def order_steps(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sets ``step_index`` (0-based) and ``dwell_seconds`` (to the next step; None on the last) in walk order.

    ``rows`` are one parent's step rows in the list's order (newest first), each with ``widget``,
    ``transitioned_to`` and ``date_created`` (a datetime, or None: such steps go last).
    """

    def created(row: dict[str, Any]) -> tuple[int, datetime]:
        at = _utc(row.get("date_created"))
        return (1, datetime.max) if at is None else (0, at)

    ordered: list[dict[str, Any]] = []
    for _, group in groupby(sorted(reversed(rows), key=created), key=created):
        tied = list(group)
        previous_to = ordered[-1].get("transitioned_to") if ordered else None
        ordered.extend(_chain(tied, previous_to) if len(tied) > 1 else tied)
    for index, row in enumerate(ordered):
        row["step_index"] = index
        here = _utc(row.get("date_created"))
        there = _utc(ordered[index + 1].get("date_created")) if index + 1 < len(ordered) else None
        row["dwell_seconds"] = (there - here).total_seconds() if here is not None and there is not None else None
    return ordered
