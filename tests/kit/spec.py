"""Twilio's vendored OpenAPI spec as a validator, a small HTTP client, and what the emulator lists."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import orjson
import requests
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from tests.kit.studio import listed
from twilio_studio.emulator import Credentials, Emulator

SPEC_DIR = Path(__file__).resolve().parent.parent / "openapi"
CREDENTIALS = Credentials()  # the emulator's documented defaults; not secrets
ACCOUNT_AUTH = (CREDENTIALS.account_sid, CREDENTIALS.auth_token)
API_KEY_AUTH = (CREDENTIALS.api_key_sid, CREDENTIALS.api_key_secret)
TWILIO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")  # ../shared/API-NOTES.md "Dates"


# ------------------------------------------------------------------------ the spec as JSON Schema
def _strict_schema(node: Any) -> Any:
    """One OpenAPI 3.0 schema as JSON Schema 2020-12, made strict where Twilio's answers are.

    ``nullable: true`` becomes a type union with ``"null"``. Every object with declared properties
    must have all of them and no others: Twilio sends every field (null when unset), so a missing
    or misspelt field in the emulator is a defect the loose spec alone would not catch.
    """
    if isinstance(node, list):
        return [_strict_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _strict_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = _strict_schema(value)
        elif key != "nullable":
            out[key] = value
    if node.get("nullable") is True and "type" in node:
        out["type"] = [node["type"], "null"]
        if "enum" in node:
            out["enum"] = [*node["enum"], None]
    if "properties" in node:
        out.setdefault("additionalProperties", False)
        out.setdefault("required", sorted(node["properties"]))
    return out


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("date-time")
    def is_twilio_date(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not TWILIO_DATE_RE.match(value):
            return False
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")  # raises on 2026-02-30
        return True

    @checker.checks("uri")
    def is_absolute_url(value: object) -> bool:
        if not isinstance(value, str):
            return True
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.netloc)

    @checker.checks("uri-map")
    def is_uri_map(value: object) -> bool:
        if not isinstance(value, dict):
            return True
        return all(isinstance(v, str) and is_absolute_url(v) for v in value.values())

    return checker


@dataclass(frozen=True)
class Operation:
    """A GET operation of Twilio's spec and the validator of its 200 answer."""

    version: str
    path: str  # the spec's path template, e.g. /v1/Flows/{FlowSid}/Engagements
    operation_id: str
    validator: jsonschema.protocols.Validator


@cache
def spec_operations() -> tuple[tuple[re.Pattern[str], Operation], ...]:
    """Every GET operation of the vendored v1 and v2 specs, with a validator of its 200 answer."""
    checker = _format_checker()
    found: list[tuple[re.Pattern[str], Operation]] = []
    for version in ("v1", "v2"):
        spec = orjson.loads((SPEC_DIR / f"twilio_studio_{version}.json").read_bytes())
        uri = f"urn:twilio-studio-{version}"
        responses = {
            methods["get"]["operationId"]: methods["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            for methods in spec["paths"].values()
            if "get" in methods
        }
        document = _strict_schema_document(spec["components"]["schemas"], responses)
        registry: Registry[Any] = Registry().with_resource(uri, DRAFT202012.create_resource(document))
        for path, methods in spec["paths"].items():
            if "get" not in methods:
                continue
            op_id = methods["get"]["operationId"]
            validator = jsonschema.Draft202012Validator(
                {"$ref": f"{uri}#/responses/{op_id}"}, registry=registry, format_checker=checker
            )
            pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
            found.append((pattern, Operation(version, path, op_id, validator)))
    return tuple(found)


def _strict_schema_document(components: dict[str, Any], responses: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": {"schemas": {name: _strict_schema(s) for name, s in components.items()}},
        "responses": {name: _strict_schema(s) for name, s in responses.items()},
    }


def operation_for(url_or_path: str) -> Operation:
    """The spec's GET operation that serves this path; fails the test when the spec has none."""
    path = urlsplit(url_or_path).path
    matches = [op for pattern, op in spec_operations() if pattern.match(path)]
    assert len(matches) == 1, f"{path} matches {len(matches)} operations of Twilio's spec, not one"
    return matches[0]


def spec_errors(url_or_path: str, body: Any) -> list[str]:
    """What in ``body`` breaks the spec's 200 schema for the operation at ``url_or_path``."""
    op = operation_for(url_or_path)
    return [
        f"{op.operation_id} at /{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in op.validator.iter_errors(body)
    ]


# ------------------------------------------------------------------------ HTTP
class StudioHttp:
    """GETs against an emulator with real HTTP: paths are joined to the base URL, URLs used verbatim."""

    def __init__(self, base_url: str, auth: tuple[str, str] | None = ACCOUNT_AUTH) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.auth = auth

    def get(self, path_or_url: str, **params: Any) -> requests.Response:
        """The response to a GET of a path (joined to the base URL) or of a whole URL."""
        url = path_or_url if path_or_url.startswith("http") else self.base_url + path_or_url
        return self.session.get(url, params=params or None, timeout=30)

    def json(self, path_or_url: str, **params: Any) -> dict[str, Any]:
        """The JSON object of a 200 answer; fails the test on any other status."""
        r = self.get(path_or_url, **params)
        assert r.status_code == 200, f"GET {r.url} answered {r.status_code}: {r.text[:300]}"
        body: dict[str, Any] = r.json()
        return body

    def pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every page of a list, following meta.next_page_url verbatim as Twilio's SDK does."""
        body = self.json(path, **params)
        yield body
        for _ in range(100_000):
            next_url = body["meta"]["next_page_url"]
            if next_url is None:
                return
            body = self.json(next_url)
            yield body
        raise AssertionError(f"{path} did not end after 100,000 pages")

    def records(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every record of every page of a list."""
        out: list[dict[str, Any]] = []
        for page in self.pages(path, **params):
            out.extend(page[page["meta"]["key"]])
        return out


# ------------------------------------------------------------------------ expectations
def visible_sids(emulator: Emulator, flow_index: int, at: datetime | None = None) -> list[str]:
    """The engagement SIDs the dataset says are listed at ``at`` (default: now), newest first."""
    return [script.sid for script in reversed(listed(emulator.dataset, at or emulator.now(), flows=[flow_index]))]


def parse_date(value: str) -> datetime:
    """A Twilio date (``2026-03-01T10:00:00Z``) as an aware UTC datetime."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
