"""The source's options, checked before any request: a bad value is a sentence saying how to fix it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

import pendulum

from twilio_studio.client import ConfigurationError
from twilio_studio.settings import (
    ACCOUNT_SID_RE,
    API_KEY_SID_RE,
    CONTEXT_MODES,
    FLOW_SID_RE,
    MAX_CONCURRENCY_LIMIT,
    MAX_PAGE_SIZE,
    MIN_PAGE_SIZE,
    WIDGET_FIELDS_MODES,
    WRITE_MODES,
)

SECTION = "sources.twilio_studio"


def where(key: str) -> str:
    """Where a user sets ``key``: the config path and the environment variable."""
    return f"{SECTION}.{key} in .dlt/config.toml or .dlt/secrets.toml, or the env var {env_var(key)}"


def env_var(key: str) -> str:
    """The environment variable dlt reads ``key`` of the source from."""
    return f"{SECTION.replace('.', '__').upper()}__{key.upper()}"


@dataclass
class SourceOptions:
    """The source's options as the user gave them (dlt's configuration or the call)."""

    flow_sids: Sequence[str] | str | None
    account_sid: str | None
    auth_token: str | None
    api_key_sid: str | None
    api_key_secret: str | None
    base_url: str
    page_size: int
    context_mode: str
    write_mode: str
    widget_fields: str
    max_concurrency: int
    start_date: str | datetime | None
    end_date: str | datetime | None
    lookback_seconds: float
    max_attempts: int
    request_timeout: float
    stop_at_ended_pages: bool = False
    keep_card_data: bool = False


@dataclass(frozen=True)
class ValidOptions:
    """The options checked and normalized: dates in UTC, credentials chosen, numbers as floats."""

    flow_sids: list[str] | None
    username: str
    password: str
    base_url: str
    page_size: int
    context_mode: str
    write_mode: str
    widget_fields: str
    max_concurrency: int
    start_date: datetime | None
    end_date: datetime | None
    lookback_seconds: float
    max_attempts: int
    request_timeout: float
    stop_at_ended_pages: bool = False
    keep_card_data: bool = False

    def __repr__(self) -> str:  # never show the password, not even in a debugger or a traceback
        return f"ValidOptions(base_url={self.base_url!r}, flow_sids={self.flow_sids!r}, ...)"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _flow_sids(raw: Sequence[str] | str | None) -> list[str] | None:
    if raw is None:
        return None
    items = [s.strip() for s in raw.split(",")] if isinstance(raw, str) else list(raw)
    items = [s for s in items if s != ""]
    if not items:
        raise ConfigurationError(
            "flow_sids is empty: give at least one Flow SID, or leave it unset to load every flow "
            f"({where('flow_sids')})"
        )
    for sid in items:
        if not isinstance(sid, str) or not FLOW_SID_RE.match(sid):
            raise ConfigurationError(
                f"flow_sids: {_shown(sid)} is not a Flow SID; expected FW followed by 32 hex digits, "
                f"e.g. FW0123456789abcdef0123456789abcdef ({where('flow_sids')})"
            )
    return list(dict.fromkeys(items))


def _credentials(o: SourceOptions) -> tuple[str, str]:
    if o.api_key_sid or o.api_key_secret:
        if not (o.api_key_sid and o.api_key_secret):
            missing = "api_key_secret" if o.api_key_sid else "api_key_sid"
            raise ConfigurationError(
                f"Twilio credentials: api_key_sid and api_key_secret go together; {missing} is not set. "
                f"Set {where(missing)}"
            )
        _check_sid("api_key_sid", o.api_key_sid, API_KEY_SID_RE, "an API key SID (SK")
        return o.api_key_sid, o.api_key_secret
    if not (o.account_sid and o.auth_token):
        missing = " and ".join(k for k in ("account_sid", "auth_token") if not getattr(o, k))
        raise ConfigurationError(
            f"Twilio credentials are missing: {missing} not set. Put account_sid and auth_token "
            f"(or api_key_sid and api_key_secret) under [{SECTION}] in .dlt/secrets.toml, or set the env "
            f"vars {env_var('account_sid')} and {env_var('auth_token')}"
        )
    _check_sid("account_sid", o.account_sid, ACCOUNT_SID_RE, "an Account SID (AC")
    return o.account_sid, o.auth_token


def _check_sid(key: str, value: str, pattern: re.Pattern[str], kind: str) -> None:
    """A credential SID of the right form; its value is never shown (it identifies the account)."""
    if not pattern.match(value):
        raise ConfigurationError(
            f"Twilio credentials: {key} is not {kind} followed by 32 hex digits); check {where(key)}"
        )


def _base_url(raw: str) -> str:
    parts = urlsplit(raw if isinstance(raw, str) else "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"base_url: {_shown(raw)} is not an http(s) URL; expected e.g. https://studio.twilio.com "
            f"({where('base_url')})"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigurationError(
            "base_url must be a plain scheme://host[:port] without credentials, query or fragment "
            f"({where('base_url')})"
        )
    return raw.rstrip("/")


def _time(name: str, raw: str | datetime | None) -> datetime | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, datetime):
        value = raw
    else:
        try:
            parsed = pendulum.parse(str(raw))
        except (ValueError, pendulum.parsing.exceptions.ParserError):
            parsed = None
        if not isinstance(parsed, datetime):
            raise ConfigurationError(
                f"{name}: {_shown(raw)} is not a date or time; use ISO 8601, e.g. 2026-01-31 or "
                f"2026-01-31T08:00:00Z ({where(name)})"
            ) from None
        value = parsed
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(value.timestamp(), tz=timezone.utc)


def _int_in(name: str, raw: object, lo: int, hi: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
        raise ConfigurationError(
            f"{name}: {_shown(raw)} is out of range; use a whole number from {lo} to {hi} ({where(name)})"
        )
    return raw


def validate_options(o: SourceOptions) -> ValidOptions:
    """Checks every option; raises ConfigurationError naming the option, the value and the fix."""
    flow_sids = _flow_sids(o.flow_sids)
    page_size = _int_in("page_size", o.page_size, MIN_PAGE_SIZE, MAX_PAGE_SIZE)
    if o.context_mode not in CONTEXT_MODES:
        raise ConfigurationError(
            f"context_mode: {_shown(o.context_mode)} is not one of {', '.join(CONTEXT_MODES)} ({where('context_mode')})"
        )
    if o.widget_fields not in WIDGET_FIELDS_MODES:
        raise ConfigurationError(
            f"widget_fields: {_shown(o.widget_fields)} is not one of {', '.join(WIDGET_FIELDS_MODES)} "
            f"({where('widget_fields')})"
        )
    if o.write_mode not in WRITE_MODES:
        raise ConfigurationError(
            f"write_mode: {_shown(o.write_mode)} is not one of {', '.join(WRITE_MODES)} ({where('write_mode')})"
        )
    max_concurrency = _int_in("max_concurrency", o.max_concurrency, 1, MAX_CONCURRENCY_LIMIT)
    max_attempts = _int_in("max_attempts", o.max_attempts, 1, 20)
    base_url = _base_url(o.base_url)
    start, end = _time("start_date", o.start_date), _time("end_date", o.end_date)
    if start is not None and end is not None and end <= start:
        raise ConfigurationError(
            f"end_date ({end:%Y-%m-%dT%H:%M:%SZ}) must be after start_date ({start:%Y-%m-%dT%H:%M:%SZ})"
        )
    for name in ("lookback_seconds", "request_timeout"):
        value = getattr(o, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigurationError(
                f"{name}: {_shown(value)} must be a number of seconds, zero or more ({where(name)})"
            )
    if not isinstance(o.stop_at_ended_pages, bool):
        raise ConfigurationError(
            f"stop_at_ended_pages: {_shown(o.stop_at_ended_pages)} must be true or false "
            f"({where('stop_at_ended_pages')})"
        )
    if o.request_timeout == 0:
        raise ConfigurationError(f"request_timeout must be more than 0 seconds ({where('request_timeout')})")
    if not isinstance(o.keep_card_data, bool):
        raise ConfigurationError(
            f"keep_card_data: {_shown(o.keep_card_data)} is not true or false ({where('keep_card_data')})"
        )
    username, password = _credentials(o)
    return ValidOptions(
        flow_sids=flow_sids,
        username=username,
        password=password,
        base_url=base_url,
        page_size=page_size,
        context_mode=o.context_mode,
        write_mode=o.write_mode,
        widget_fields=o.widget_fields,
        max_concurrency=max_concurrency,
        start_date=start,
        end_date=end,
        lookback_seconds=float(o.lookback_seconds),
        max_attempts=max_attempts,
        request_timeout=float(o.request_timeout),
        stop_at_ended_pages=o.stop_at_ended_pages,
        keep_card_data=o.keep_card_data,
    )
