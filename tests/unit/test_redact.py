"""Card data of Capture Payments widgets becomes a fixed marker: under its keys and every copy."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from twilio_studio.redact import CARD_FIELDS, MARKER, may_hold_card_data, redact_card_data

PAID = {
    "Result": "success",
    "PaymentCardNumber": "xxxx-xxxx-xxxx-4242",
    "PaymentCardType": "visa",
    "ExpirationDate": "0530",
    "SecurityCode": "xxx",
    "PaymentCardPostalCode": "94107",
    "PaymentToken": "tok_1a2b3c4d5e6f",
    "PaymentConfirmationCode": "ch_99",
    "ProfileId": "",
}
REDACTED = {**PAID, **{k: MARKER for k in CARD_FIELDS}}


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        pytest.param({"widgets": {"pay": dict(PAID)}}, {"widgets": {"pay": REDACTED}}, id="widget_output"),
        pytest.param(
            {"widgets": {"pay": dict(PAID)}, "flow": {"variables": {"card": "xxxx-xxxx-xxxx-4242", "n": 1}}},
            {"widgets": {"pay": REDACTED}, "flow": {"variables": {"card": MARKER, "n": 1}}},
            id="copy_in_a_variable",
        ),
        pytest.param(
            {"widgets": {"pay": dict(PAID), "post": {"body": '{"token": "tok_1a2b3c4d5e6f", "ok": 1}'}}},
            {"widgets": {"pay": REDACTED, "post": {"body": f'{{"token": "{MARKER}", "ok": 1}}'}}},
            id="copy_inside_a_request_body",
        ),
        pytest.param(
            {"widgets": {"pay": dict(PAID), "menu": {"Digits": "xxx1"}}},
            {"widgets": {"pay": REDACTED, "menu": {"Digits": "xxx1"}}},
            id="short_values_only_replaced_whole",
        ),
        pytest.param(
            {"trigger": {"parent": {"parameters": {"paymenttoken": "tok_x", "amount": "9.99"}}}},
            {"trigger": {"parent": {"parameters": {"paymenttoken": MARKER, "amount": "9.99"}}}},
            id="any_case_anywhere",
        ),
        pytest.param(
            {"widgets": {"pay": {"PaymentCardNumber": {"masked": "4242"}, "list": ["4242", 0]}}},
            {"widgets": {"pay": {"PaymentCardNumber": MARKER, "list": ["4242", 0]}}},
            id="nested_value_under_a_card_key",
        ),
        pytest.param(
            {"widgets": {"pay": {"Result": "caller-hung-up", "PaymentCardNumber": None}}},
            {"widgets": {"pay": {"Result": "caller-hung-up", "PaymentCardNumber": None}}},
            id="null_stays_null",
        ),
        pytest.param(
            {"widgets": {"pay": {"ExpirationDate": 1229}}, "flow": {"data": {"exp": 1229, "flag": True}}},
            {"widgets": {"pay": {"ExpirationDate": MARKER}}, "flow": {"data": {"exp": MARKER, "flag": True}}},
            id="numbers_too",
        ),
        pytest.param({"widgets": {"menu": {"Digits": "1"}}}, {"widgets": {"menu": {"Digits": "1"}}}, id="untouched"),
        pytest.param({}, {}, id="empty"),
    ],
)
def test_redact_card_data(context: dict[str, Any], expected: dict[str, Any]) -> None:
    assert redact_card_data(copy.deepcopy(context)) == expected


def test_none_and_idempotent() -> None:
    assert redact_card_data(None) is None
    once = redact_card_data({"widgets": {"pay": dict(PAID)}})
    assert redact_card_data(copy.deepcopy(once)) == once


def test_any_case_of_a_key_is_found() -> None:
    context = {"flow": {"variables": {"PAYMENTTOKEN": "tok_9", "pAyMeNtCaRdNuMbEr": "4111111111111111"}}}
    assert redact_card_data(context) == {"flow": {"variables": {"PAYMENTTOKEN": MARKER, "pAyMeNtCaRdNuMbEr": MARKER}}}


@pytest.mark.parametrize(
    ("text", "may"),
    [
        pytest.param(b'{"engagements": [{"context": {"widgets": {"ask": {"Body": "yes"}}}}]}', False, id="none"),
        pytest.param(b'{"context": {"widgets": {"pay": {"PaymentCardNumber": "4242"}}}}', True, id="card_key"),
        pytest.param(b'{"flow": {"variables": {"EXPIRATIONDATE": "0530"}}}', True, id="upper_case"),
        pytest.param(b'{"flow": {"data": {"note": "securitycode"}}}', True, id="a_value_that_looks_like_one"),
        pytest.param(b'{"widgets": {"pay": {"\\u0050aymentToken": "tok"}}}', True, id="escaped_letter"),
        pytest.param(b'{"flow": {"data": {"name": "Zo\\u00eb"}}}', True, id="any_escape"),
    ],
)
def test_a_page_text_without_hints_surely_holds_no_card_key(text: bytes, may: bool) -> None:
    assert may_hold_card_data(text) is may
