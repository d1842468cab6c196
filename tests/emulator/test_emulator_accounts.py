"""The emulator's accounts, and Studio data that follows the credentials of each request.

The core API's Accounts list and fetch follow Twilio's v2010 spec.
"""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import requests
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from tests.kit.spec import ACCOUNT_AUTH, API_KEY_AUTH, _strict_schema
from twilio_studio.emulator import Dataset, Emulator, Subaccount

SPEC = Path(__file__).resolve().parent.parent / "openapi" / "twilio_api_v2010_accounts.json"
STATUSES = {1: "suspended", 3: "closed"}


def _validator(path: str) -> jsonschema.protocols.Validator:
    spec = orjson.loads(SPEC.read_bytes())
    document = {
        "components": {"schemas": {k: _strict_schema(v) for k, v in spec["components"]["schemas"].items()}},
        "response": _strict_schema(
            spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        ),
    }
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("uri")
    def relative_uri(value: object) -> bool:  # the core API's URIs are relative to https://api.twilio.com
        return not isinstance(value, str) or value.startswith("/2010-04-01/")

    @checker.checks("date-time-rfc-2822")
    def rfc_2822(value: object) -> bool:
        return not isinstance(value, str) or parsedate_to_datetime(value).utcoffset() is not None

    registry: Registry[Any] = Registry().with_resource("urn:v2010", DRAFT202012.create_resource(document))
    return jsonschema.Draft202012Validator({"$ref": "urn:v2010#/response"}, registry=registry, format_checker=checker)


LIST = _validator("/2010-04-01/Accounts.json")
FETCH = _validator("/2010-04-01/Accounts/{Sid}.json")


def errors(validator: jsonschema.protocols.Validator, body: Any) -> list[str]:
    return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    subs = Subaccount.generate(5, flows=2, engagements_per_flow=20, statuses=STATUSES)
    with Emulator(Dataset(flows=3, engagements_per_flow=20), subaccounts=subs) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def subs(emu: Emulator) -> list[Subaccount]:
    return [Subaccount(emu.accounts.datasets[a.sid], a.auth_token, a.status) for a in emu.accounts.accounts[1:]]


def get(emu: Emulator, path: str, auth: tuple[str, str], **params: Any) -> requests.Response:
    return requests.get(emu.base_url + path, params=params or None, auth=auth, timeout=30)


def every_page(emu: Emulator, auth: tuple[str, str], **params: Any) -> list[dict[str, Any]]:
    """Every Accounts page, following the relative next_page_uri at the top level of the body."""
    pages = [get(emu, "/2010-04-01/Accounts.json", auth, **params).json()]
    while pages[-1]["next_page_uri"] is not None:
        assert len(pages) < 100
        pages.append(get(emu, pages[-1]["next_page_uri"], auth).json())
    return pages


@pytest.mark.parametrize("page_size", [1, 2, 50], ids=lambda n: f"PageSize{n}")
def test_the_parent_lists_itself_and_every_subaccount_on_pages_that_follow_the_spec(
    emu: Emulator, subs: list[Subaccount], page_size: int
) -> None:
    pages = every_page(emu, ACCOUNT_AUTH, PageSize=page_size)
    for page in pages:
        assert errors(LIST, page) == []
        assert "meta" not in page and page["page_size"] == page_size
    accounts = [a for page in pages for a in page["accounts"]]
    parent = ACCOUNT_AUTH[0]
    assert [a["sid"] for a in accounts] == [parent, *(s.sid for s in subs)]
    assert {a["owner_account_sid"] for a in accounts} == {parent}  # a parent's owner is itself
    assert [a["status"] for a in accounts[1:]] == [STATUSES.get(n, "active") for n in range(5)]
    assert [a["auth_token"] for a in accounts[1:]] == [s.auth_token for s in subs]
    assert [p["page"] for p in pages] == list(range(len(pages)))


def test_fetch_follows_the_spec_and_a_subaccount_sees_only_itself(emu: Emulator, subs: list[Subaccount]) -> None:
    sub = subs[0]
    body = get(emu, f"/2010-04-01/Accounts/{sub.sid}.json", ACCOUNT_AUTH).json()
    assert errors(FETCH, body) == []
    assert (body["sid"], body["auth_token"], body["uri"]) == (
        sub.sid,
        sub.auth_token,
        f"/2010-04-01/Accounts/{sub.sid}.json",
    )
    own = (sub.sid, sub.auth_token)
    assert [a["sid"] for p in every_page(emu, own) for a in p["accounts"]] == [sub.sid]
    other = get(emu, f"/2010-04-01/Accounts/{subs[2].sid}.json", own)
    assert other.status_code == 404 and other.json()["code"] == 20404


def test_answers_to_the_parents_api_key_carry_no_auth_token(emu: Emulator) -> None:
    accounts = [a for p in every_page(emu, API_KEY_AUTH) for a in p["accounts"]]
    assert len(accounts) == 6 and {a["auth_token"] for a in accounts} == {None}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"Status": "suspended"}, ["suspended"]),
        ({"Status": "closed"}, ["closed"]),
        ({"Status": "active"}, ["active"] * 4),
    ],
    ids=["suspended", "closed", "active"],
)
def test_status_filter(emu: Emulator, params: dict[str, str], expected: list[str]) -> None:
    pages = every_page(emu, ACCOUNT_AUTH, **params)
    assert [a["status"] for p in pages for a in p["accounts"]] == expected
    assert all(f"Status={params['Status']}" in p["uri"] for p in pages)


@pytest.mark.parametrize(
    ("path", "params", "auth", "status", "code"),
    [
        ("/2010-04-01/Accounts.json", {}, ("AC" + "b" * 32, "wrong"), 401, 20003),
        ("/2010-04-01/Accounts.json", {"PageSize": "0"}, ACCOUNT_AUTH, 400, 20001),
        ("/2010-04-01/Accounts.json", {"PageToken": "PAnot-a-sid"}, ACCOUNT_AUTH, 400, 21481),
        ("/2010-04-01/Accounts.json", {"Status": "gone"}, ACCOUNT_AUTH, 400, 20001),
        ("/2010-04-01/Accounts/AC" + "0" * 32 + ".json", {}, ACCOUNT_AUTH, 404, 20404),
    ],
    ids=["bad-credentials", "page-size-0", "bad-page-token", "bad-status", "unknown-account"],
)
def test_error_bodies(
    emu: Emulator, path: str, params: dict[str, str], auth: tuple[str, str], status: int, code: int
) -> None:
    r = get(emu, path, auth, **params)
    body = r.json()
    assert (r.status_code, body["code"], body["status"]) == (status, code, status)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}" and body["message"]


def test_studio_answers_with_the_data_of_the_account_that_signed_in(emu: Emulator, subs: list[Subaccount]) -> None:
    seen: dict[str, set[str]] = {}
    for account, auth in [(ACCOUNT_AUTH[0], ACCOUNT_AUTH)] + [
        (s.sid, (s.sid, s.auth_token)) for s in subs if s.status == "active"
    ]:
        flows = get(emu, "/v1/Flows", auth).json()["flows"]
        assert {f["account_sid"] for f in flows} == {account}
        assert {f["sid"] for f in flows} == {f.sid for f in emu.accounts.datasets[account].flows}
        runs = get(emu, f"/v1/Flows/{flows[0]['sid']}/Engagements", auth).json()["engagements"]
        assert runs and {e["account_sid"] for e in runs} == {account}
        seen[account] = {f["sid"] for f in flows}
    assert sum(len(v) for v in seen.values()) == len(set().union(*seen.values()))  # no flow in two accounts
    # another account's flow is not found: the credentials, not the path, choose the account
    sub = subs[0]
    other = get(emu, f"/v1/Flows/{next(iter(seen[ACCOUNT_AUTH[0]]))}", (sub.sid, sub.auth_token))
    assert other.status_code == 404


@pytest.mark.parametrize("index", sorted(STATUSES), ids=lambda n: STATUSES[n])
def test_suspended_and_closed_accounts_cannot_sign_in(emu: Emulator, subs: list[Subaccount], index: int) -> None:
    sub = subs[index]
    for path in ("/v1/Flows", "/2010-04-01/Accounts.json"):
        r = get(emu, path, (sub.sid, sub.auth_token))
        assert (r.status_code, r.json()["code"]) == (401, 20003)


def test_the_emulator_records_which_credentials_served_each_request(emu: Emulator, subs: list[Subaccount]) -> None:
    sub = subs[2]
    mark = len(emu.stats.served)
    get(emu, "/v1/Flows", (sub.sid, sub.auth_token))
    get(emu, "/v1/Flows", API_KEY_AUTH)
    assert emu.stats.served[mark:] == [(sub.sid, sub.sid, "/v1/Flows"), (API_KEY_AUTH[0], ACCOUNT_AUTH[0], "/v1/Flows")]


def test_one_account_stays_the_default() -> None:
    with Emulator(Dataset(flows=1, engagements_per_flow=5)) as emu:
        accounts = [a for p in every_page(emu, ACCOUNT_AUTH) for a in p["accounts"]]
    assert [(a["sid"], a["status"]) for a in accounts] == [(ACCOUNT_AUTH[0], "active")]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"statuses": {0: "paused"}}, "status must be one of"), ({"seed": 7}, "flow")],
    ids=["unknown-status", "flows-of-the-parent"],
)
def test_bad_subaccounts_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Emulator(Dataset(seed=7), subaccounts=Subaccount.generate(1, **kwargs))
