"""Pseudonymizes contact data with a keyed hash, so analytics can count contacts without phone numbers.

A pure transformation of normalized rows (no I/O): applied as a map on the resources, after the
context was turned into rows, so every copy of an address is replaced: the ``contact_channel_address``
column, the raw ``context`` JSON, and the ``fields`` / ``flow_data`` rows derived from it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

# Keys under which Studio puts channel addresses (phone numbers, client:, whatsapp: ...), lower-cased:
# `From`/`To` in triggers and replies, `to` in send-message outputs, `contact.channel.address`.
ADDRESS_KEYS = frozenset({"address", "from", "to", "caller", "called", "contact_channel_address", "initiated_by"})
PREFIX = "hmac:"


class Pseudonymizer:
    """Replaces contact addresses by ``hmac:`` + HMAC-SHA256(key, address), the same value everywhere."""

    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def __repr__(self) -> str:  # the key never shows
        return "Pseudonymizer(<key>)"

    def token(self, value: str) -> str:
        """The pseudonym of ``value``; a pseudonym stays as it is."""
        if value.startswith(PREFIX):
            return value
        digest = hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()
        return PREFIX + digest[:32]

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        """Pseudonymizes the row's contact values wherever they appear in it; returns the row."""
        known = {v for k in ("contact_channel_address", "initiated_by") if isinstance(v := row.get(k), str)}
        self._walk(row, known)
        return row

    def _walk(self, root: Any, known: set[str]) -> None:
        stack = [root]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if "path" in node and "value" in node and isinstance(node["value"], str):
                    last = str(node["path"]).rsplit(".", 1)[-1]
                    if last.lower() in ADDRESS_KEYS or node["value"] in known:
                        node["value"] = self.token(node["value"])
                for key, value in node.items():
                    if isinstance(value, str):
                        if str(key).lower() in ADDRESS_KEYS or value in known:
                            node[key] = self.token(value)
                    elif isinstance(value, (dict, list)):
                        stack.append(value)
            elif isinstance(node, list):
                for n, value in enumerate(node):
                    if isinstance(value, str) and value in known:
                        node[n] = self.token(value)
                    elif isinstance(value, (dict, list)):
                        stack.append(value)
