"""Card data of Studio's Capture Payments widget, replaced by a fixed marker before anything is written.

A pure transformation of a parsed context (no I/O), applied where the walk has the context in hand
and before it is normalized, so the raw ``context`` column, widget ``outputs``, the ``fields`` rows and
step contexts all get the same redacted copy, whatever builds the child tables afterwards.

The widget (TwiML ``<Pay>``) writes ``PaymentCardNumber``, ``ExpirationDate``, ``SecurityCode``,
``PaymentCardPostalCode`` and ``PaymentToken`` into ``widgets.<name>``; PCI DSS forbids storing the
security code after authorization at all, and the card number and expiry date in the clear. The
outcome fields (``Result``, ``PaymentCardType``, ``PaymentConfirmationCode``, ``ProfileId``) stay.
"""

from __future__ import annotations

from typing import Any

import orjson

# The keys Capture Payments writes card data under (Twilio's names); matched case-insensitively
# anywhere in a context: a flow may copy them into flow.variables or hand them to a subflow.
CARD_FIELDS = ("PaymentCardNumber", "ExpirationDate", "SecurityCode", "PaymentCardPostalCode", "PaymentToken")
CARD_KEYS = frozenset(name.lower() for name in CARD_FIELDS)
MARKER = "[redacted]"
# A card value this long is also removed where it sits inside a longer text (a request body, a
# message); shorter ones (a 3-digit security code) only where a whole value equals them, so a
# ``Digits: "123"`` elsewhere is not mangled by a substring match.
MIN_EMBEDDED = 6
# A context's JSON text, lower-cased, holds one of these wherever a card key sits: a cheap test that
# spares the walk of the many contexts without any (a walk in Python cost a third of the
# normalization's time; serializing with orjson and these tests, a tenth of that)
HINTS = (b"payment", b"expiration", b"securitycode")


def _sensitive_values(context: dict[str, Any]) -> set[str]:
    """The card values under card keys anywhere in ``context``; replaces them by the marker."""
    found: set[str] = set()
    stack: list[Any] = [context]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and key.lower() in CARD_KEYS and value is not None and value != MARKER:
                    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                        text = str(value)
                        if text:
                            found.add(text)
                    node[key] = MARKER
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return found


def _scrub(value: str, found: set[str], embedded: tuple[str, ...]) -> str:
    if value in found:
        return MARKER
    for secret in embedded:
        if secret in value:
            value = value.replace(secret, MARKER)
    return value


def _remove_copies(context: dict[str, Any], found: set[str]) -> None:
    """Replaces every other copy of a card value (whole, or inside a longer text) by the marker."""
    embedded = tuple(sorted((v for v in found if len(v) >= MIN_EMBEDDED), key=len, reverse=True))
    stack: list[Any] = [context]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            items: Any = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        for key, value in list(items):
            if isinstance(value, str):
                scrubbed = _scrub(value, found, embedded)
                if scrubbed is not value:
                    node[key] = scrubbed
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and str(value) in found:
                node[key] = MARKER
            elif isinstance(value, (dict, list)):
                stack.append(value)


def may_hold_card_data(text: bytes) -> bool:
    r"""Whether a JSON text (a whole list page) may hold a card key: False only when it surely holds none.

    None of HINTS in its lower-cased bytes, and no ``\u`` escape, the one way JSON can spell a
    letter of a key in other bytes.
    """
    return b"\\u" in text or _holds_hint(text)


def _holds_hint(text: bytes) -> bool:
    lowered = text.lower()  # once: a page's text is megabytes
    return any(hint in lowered for hint in HINTS)


def _may_hold_card_keys(context: dict[str, Any]) -> bool:
    try:
        text = orjson.dumps(context)
    except TypeError:  # too deep or an odd type for orjson: walk it
        return True
    return _holds_hint(text)


def redact_card_data(context: dict[str, Any] | None) -> dict[str, Any] | None:
    """The context with every card value replaced by :data:`MARKER` (changed in place, and returned).

    Values under the card keys become the marker, wherever in the context they sit, and so does
    every other copy of such a value (e.g. a card number the flow put into a variable or a request
    body). A context without card keys is returned as it is.
    """
    if not context or not _may_hold_card_keys(context):
        return context
    found = _sensitive_values(context)
    if found:
        _remove_copies(context, found)
    return context
