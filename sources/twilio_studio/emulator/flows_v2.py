"""Studio v2 Flows and Revisions as the emulator serves them (fields of Twilio's v2 OpenAPI spec).

Lists carry ``definition: null``; fetching a flow or one revision returns its definition.
"""

from __future__ import annotations

from typing import Any

from twilio_studio.emulator.dataset import Flow, _hex, iso
from twilio_studio.emulator.definitions import Revision


def _author(flow: Flow) -> str:
    return "US" + _hex(flow.sid, "author")


def render_v2_flow(origin: str, account_sid: str, flow: Flow, with_definition: bool) -> dict[str, Any]:
    """A v2 Flow: its latest revision as ``render_revision`` shows it, with the flow's own fields.

    The flow's own dates, URL, links and webhook.
    """
    url = f"{origin}/v2/Flows/{flow.sid}"
    return {
        **render_revision(origin, account_sid, flow, flow.revisions[-1], with_definition),
        "warnings": [],
        "date_created": iso(flow.date_created),
        "date_updated": iso(flow.date_updated),
        "webhook_url": f"https://webhooks.twilio.com/v1/Accounts/{account_sid}/Flows/{flow.sid}",
        "url": url,
        "links": {
            "test_users": f"{url}/TestUsers",
            "revisions": f"{url}/Revisions",
            "executions": f"{url}/Executions",
        },
    }


def render_revision(
    origin: str, account_sid: str, flow: Flow, revision: Revision, with_definition: bool
) -> dict[str, Any]:
    """One immutable revision of a flow (its ``sid`` is the flow's, as in Twilio's examples)."""
    return {
        "sid": flow.sid,
        "account_sid": account_sid,
        "author_sid": _author(flow),
        "friendly_name": flow.friendly_name,
        "definition": revision.definition() if with_definition else None,
        "status": revision.status,
        "revision": revision.number,
        "commit_message": revision.commit_message,
        "valid": True,
        "errors": [],
        "date_created": iso(revision.date_created),
        "date_updated": iso(revision.date_created),
        "url": f"{origin}/v2/Flows/{flow.sid}/Revisions/{revision.number}",
    }


def find_revision(flow: Flow, name: str) -> Revision | None:
    """A revision by number, or ``LatestPublished`` / ``LatestRevision`` as the spec allows."""
    if name == "LatestRevision":
        return flow.revisions[-1] if flow.revisions else None
    if name == "LatestPublished":
        return flow.published[-1] if flow.published else None
    if not name.isdigit():
        return None
    n = int(name)
    return flow.revisions[n - 1] if 1 <= n <= len(flow.revisions) else None
