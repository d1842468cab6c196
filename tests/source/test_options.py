"""Bad input: a clear error, naming the option and the fix, before any request is sent."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kit.duck import Loaded
from tests.kit.studio import ACCOUNT_SID, AUTH_TOKEN, DEFAULT_ENGAGEMENTS, DEFAULT_FLOWS
from twilio_studio import ConfigurationError, twilio_studio_source
from twilio_studio.emulator import Emulator

GOOD: dict[str, Any] = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"flow_sids": ["FW123"]},
            "flow_sids: 'FW123' is not a Flow SID; expected FW followed by 32 hex digits, "
            "e.g. FW0123456789abcdef0123456789abcdef (sources.twilio_studio.flow_sids in .dlt/config.toml "
            "or .dlt/secrets.toml, or the env var SOURCES__TWILIO_STUDIO__FLOW_SIDS)",
            id="flow_sid_too_short",
        ),
        pytest.param(
            {"flow_sids": ["FN" + "0" * 32]},
            "flow_sids: 'FN00000000000000000000000000000000' is not a Flow SID",
            id="engagement_sid_given_as_flow",
        ),
        pytest.param(
            {"flow_sids": []},
            "flow_sids is empty: give at least one Flow SID, or leave it unset to load every flow",
            id="flow_sids_empty",
        ),
        pytest.param(
            {"page_size": 0},
            "page_size: 0 is out of range; use a whole number from 1 to 1000 (sources.twilio_studio.page_size",
            id="page_size_zero",
        ),
        pytest.param({"page_size": 1001}, "page_size: 1001 is out of range", id="page_size_above_1000"),
        pytest.param({"page_size": "50"}, "page_size: '50' is out of range", id="page_size_text"),
        pytest.param(
            {"base_url": "ftp://studio.twilio.com"},
            "base_url: 'ftp://studio.twilio.com' is not an http(s) URL; expected e.g. https://studio.twilio.com",
            id="base_url_ftp",
        ),
        pytest.param(
            {"base_url": "studio.twilio.com"},
            "base_url: 'studio.twilio.com' is not an http(s) URL",
            id="base_url_no_scheme",
        ),
        pytest.param(
            {"base_url": "https://user:pw@studio.twilio.com"},
            "base_url must be a plain scheme://host[:port] without credentials",
            id="base_url_with_credentials",
        ),
        pytest.param(
            {"context_mode": "sometimes"},
            "context_mode: 'sometimes' is not one of inline, fetch_missing, never",
            id="context_mode_unknown",
        ),
        pytest.param({"max_concurrency": 0}, "max_concurrency: 0 is out of range", id="concurrency_zero"),
        pytest.param(
            {"start_date": "yesterday-ish"},
            "start_date: 'yesterday-ish' is not a date or time; use ISO 8601",
            id="start_date_garbage",
        ),
        pytest.param(
            {"start_date": "2026-02-01", "end_date": "2026-01-01"},
            "end_date (2026-01-01T00:00:00Z) must be after start_date (2026-02-01T00:00:00Z)",
            id="end_before_start",
        ),
        pytest.param(
            {"lookback_seconds": -5},
            "lookback_seconds: -5 must be a number of seconds, zero or more",
            id="negative_lookback",
        ),
        pytest.param(
            {"account_sid": None, "auth_token": None},
            "Twilio credentials are missing: account_sid and auth_token not set. Put account_sid and "
            "auth_token (or api_key_sid and api_key_secret) under [sources.twilio_studio] in "
            ".dlt/secrets.toml, or set the env vars SOURCES__TWILIO_STUDIO__ACCOUNT_SID and "
            "SOURCES__TWILIO_STUDIO__AUTH_TOKEN",
            id="no_credentials",
        ),
        pytest.param(
            {"auth_token": None},
            "Twilio credentials are missing: auth_token not set.",
            id="no_auth_token",
        ),
        pytest.param(
            {"account_sid": "ACnothex"},
            "Twilio credentials: account_sid is not an Account SID (AC followed by 32 hex digits)",
            id="account_sid_malformed",
        ),
        pytest.param(
            {"api_key_sid": "SK" + "b" * 32},
            "Twilio credentials: api_key_sid and api_key_secret go together; api_key_secret is not set.",
            id="api_key_without_secret",
        ),
    ],
)
def test_bad_input_is_refused_before_any_request(
    emulator: Emulator, options: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("ACCOUNT_SID", "AUTH_TOKEN", "API_KEY_SID", "API_KEY_SECRET"):
        monkeypatch.delenv(f"SOURCES__TWILIO_STUDIO__{var}", raising=False)
    kwargs = {**GOOD, "base_url": emulator.base_url, **options}
    with pytest.raises(ConfigurationError) as err:
        twilio_studio_source(**kwargs)
    assert str(err.value).startswith(message)
    assert emulator.stats.requests == 0
    assert AUTH_TOKEN not in str(err.value)


def test_secret_never_in_error_even_when_misplaced(emulator: Emulator) -> None:
    with pytest.raises(ConfigurationError) as err:
        twilio_studio_source(account_sid="AC" + "z" * 32, auth_token="s3cr3t-token", base_url=emulator.base_url)
    assert "s3cr3t-token" not in str(err.value)
    assert "AC" + "z" * 32 not in str(err.value)


def test_credentials_come_from_environment(emulator: Emulator, loaded: Loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCES__TWILIO_STUDIO__ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.setenv("SOURCES__TWILIO_STUDIO__AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setenv("SOURCES__TWILIO_STUDIO__PAGE_SIZE", "25")
    written = loaded.run(twilio_studio_source(base_url=emulator.base_url))
    assert written["engagements"] == DEFAULT_ENGAGEMENTS and written["flows"] == DEFAULT_FLOWS
    # 60 engagements per flow at 25 a page: 3 list pages per flow
    assert sum(1 for p in emulator.stats.paths if p.endswith("/Engagements")) == 6


def test_comma_separated_flow_sids_from_environment(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    sids = [f.sid for f in emulator.dataset.flows]
    monkeypatch.setenv("SOURCES__TWILIO_STUDIO__FLOW_SIDS", ",".join(sids))
    source = twilio_studio_source(base_url=emulator.base_url, **GOOD)
    assert sorted(r["sid"] for r in source.with_resources("flows")) == sorted(sids)
