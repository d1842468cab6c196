"""Options validation (twilio_studio.options): what a valid value becomes, and each rule a value breaks.

tests/source/test_options.py proves the same errors come out of ``twilio_studio_source`` before any
request; these check ``validate_options`` itself, value by value.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.kit.studio import ACCOUNT_SID, AUTH_TOKEN
from twilio_studio import ConfigurationError
from twilio_studio.options import SourceOptions, ValidOptions, validate_options

FLOW_A, FLOW_B = "FW" + "a" * 32, "FW" + "b" * 32
API_KEY_SID = "SK" + "c" * 32
DEFAULTS = SourceOptions(
    flow_sids=None, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, api_key_sid=None, api_key_secret=None,
    base_url="https://studio.twilio.com", page_size=1000, context_mode="inline", write_mode="merge",
    widget_fields="arrays", max_concurrency=8, start_date=None, end_date=None, lookback_seconds=0,
    max_attempts=5, request_timeout=60,
)  # fmt: skip
UTC = timezone.utc


def valid(**changes: Any) -> ValidOptions:
    return validate_options(replace(DEFAULTS, **changes))


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        pytest.param({}, "flow_sids", None, id="no_flow_sids_every_flow"),
        pytest.param({"flow_sids": f"{FLOW_A}, {FLOW_B},"}, "flow_sids", [FLOW_A, FLOW_B], id="flow_sids_comma_text"),
        pytest.param({"flow_sids": [FLOW_B, FLOW_A, FLOW_B]}, "flow_sids", [FLOW_B, FLOW_A],
                     id="flow_sids_once_each_in_order"),
        pytest.param({"base_url": "http://127.0.0.1:8080/"}, "base_url", "http://127.0.0.1:8080",
                     id="base_url_without_trailing_slash"),
        pytest.param({"start_date": "2026-01-31"}, "start_date", datetime(2026, 1, 31, tzinfo=UTC),
                     id="a_date_is_midnight_utc"),
        pytest.param({"start_date": "2026-01-31T10:00:00+02:00"}, "start_date", datetime(2026, 1, 31, 8, tzinfo=UTC),
                     id="an_offset_becomes_utc"),
        pytest.param({"end_date": datetime(2026, 1, 31, 8)}, "end_date", datetime(2026, 1, 31, 8, tzinfo=UTC),
                     id="a_naive_datetime_is_utc"),
        pytest.param({"end_date": datetime(2026, 1, 31, 8, tzinfo=timezone(timedelta(hours=-5)))}, "end_date",
                     datetime(2026, 1, 31, 13, tzinfo=UTC), id="an_aware_datetime_becomes_utc"),
        pytest.param({"start_date": ""}, "start_date", None, id="an_empty_date_is_unset"),
        pytest.param({"lookback_seconds": 3600}, "lookback_seconds", 3600.0, id="lookback_as_float"),
        pytest.param({"request_timeout": 2}, "request_timeout", 2.0, id="timeout_as_float"),
        pytest.param({"api_key_sid": API_KEY_SID, "api_key_secret": "s3cret"}, "username", API_KEY_SID,
                     id="an_api_key_wins_over_the_auth_token"),
        pytest.param({}, "username", ACCOUNT_SID, id="otherwise_the_account_sid"),
    ],
)  # fmt: skip
def test_a_valid_value_becomes(changes: dict[str, Any], field: str, expected: Any) -> None:
    assert getattr(valid(**changes), field) == expected


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"flow_sids": " , "}, "flow_sids is empty", id="flow_sids_only_commas"),
        pytest.param({"flow_sids": [FLOW_A, 7]}, "flow_sids: 7 is not a Flow SID", id="flow_sid_not_text"),
        pytest.param({"page_size": True}, "page_size: True is out of range", id="page_size_bool"),
        pytest.param({"max_concurrency": 10_000}, "max_concurrency: 10000 is out of range", id="concurrency_huge"),
        pytest.param({"max_attempts": 0}, "max_attempts: 0 is out of range; use a whole number from 1 to 20",
                     id="attempts_zero"),
        pytest.param({"max_attempts": 21}, "max_attempts: 21 is out of range", id="attempts_above_20"),
        pytest.param({"write_mode": "upsert"}, "write_mode: 'upsert' is not one of merge, scd2, append",
                     id="write_mode_unknown"),
        pytest.param({"widget_fields": "some"}, "widget_fields: 'some' is not one of arrays, all, none",
                     id="widget_fields_unknown"),
        pytest.param({"base_url": "https://studio.twilio.com/?x=1"}, "base_url must be a plain scheme://host[:port]",
                     id="base_url_with_query"),
        pytest.param({"start_date": "2026-02-01", "end_date": "2026-02-01"},
                     "end_date (2026-02-01T00:00:00Z) must be after start_date (2026-02-01T00:00:00Z)",
                     id="end_equal_to_start"),
        pytest.param({"end_date": "yesterday-ish"}, "end_date: 'yesterday-ish' is not a date or time; use ISO 8601",
                     id="end_date_garbage"),
        pytest.param({"lookback_seconds": "1h"}, "lookback_seconds: '1h' must be a number of seconds",
                     id="lookback_text"),
        pytest.param({"request_timeout": -1}, "request_timeout: -1 must be a number of seconds, zero or more",
                     id="timeout_negative"),
        pytest.param({"request_timeout": 0}, "request_timeout must be more than 0 seconds", id="timeout_zero"),
        pytest.param({"stop_at_ended_pages": "yes"}, "stop_at_ended_pages: 'yes' must be true or false",
                     id="stop_at_ended_pages_text"),
        pytest.param({"keep_card_data": 1}, "keep_card_data: 1 is not true or false", id="keep_card_data_int"),
        pytest.param({"api_key_secret": "s3cret"}, "api_key_sid and api_key_secret go together; api_key_sid is not set",
                     id="api_secret_without_sid"),
        pytest.param({"api_key_sid": "AK" + "c" * 32, "api_key_secret": "s3cret"},
                     "api_key_sid is not an API key SID (SK followed by 32 hex digits)", id="api_key_sid_malformed"),
        pytest.param({"account_sid": None, "auth_token": None}, "account_sid and auth_token not set",
                     id="no_credentials_names_both"),
    ],
)  # fmt: skip
def test_an_invalid_value_is_refused_with_the_fix(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        valid(**changes)
    assert message in str(refused.value)


def test_an_option_error_says_where_to_set_it() -> None:
    with pytest.raises(ConfigurationError, match=r"sources\.twilio_studio\.max_attempts in \.dlt/config\.toml"):
        valid(max_attempts=0)
    with pytest.raises(ConfigurationError, match="env var SOURCES__TWILIO_STUDIO__MAX_ATTEMPTS"):
        valid(max_attempts=0)


def test_a_long_value_is_shown_shortened() -> None:
    with pytest.raises(ConfigurationError) as refused:
        valid(context_mode="x" * 500)
    assert "x" * 60 not in str(refused.value) and "..." in str(refused.value)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"account_sid": "AC" + "z" * 32, "auth_token": "tok-3141"}, id="account_sid"),
        pytest.param({"api_key_sid": "SK" + "z" * 32, "api_key_secret": "tok-3141"}, id="api_key_sid"),
    ],
)
def test_credentials_are_never_shown(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as refused:
        valid(**changes)  # z is not a hex digit: refused, without the value
    assert "z" * 32 not in str(refused.value) and "tok-3141" not in str(refused.value)
    options = valid(api_key_sid=API_KEY_SID, api_key_secret="tok-3141")
    assert "tok-3141" not in repr(options) and "tok-3141" not in str(options)
