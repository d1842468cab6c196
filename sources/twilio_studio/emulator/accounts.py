"""Several Twilio accounts in one emulator: a parent and its subaccounts, and the core API's Accounts.

Each account has its own dataset (flows and engagements), its own auth token and a status. As on
Twilio, Studio's paths name no account: the credentials of a request choose whose data it sees.
The core API (``/2010-04-01/Accounts.json`` and ``/2010-04-01/Accounts/{Sid}.json``, spec
shared/twilio-oai/twilio_api_v2010.json) lists and fetches accounts: the parent's credentials see the
parent and every subaccount, a subaccount's own credentials only itself. Answers to the parent's API
key carry no ``auth_token`` (``null``), the case where a user must give subaccount tokens themselves.
Suspended and closed accounts are listed, but their own credentials are refused (401, error 20003).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson

from twilio_studio.emulator.api import ApiError, Credentials, Response
from twilio_studio.emulator.dataset import Dataset
from twilio_studio.settings import (
    ERROR_INVALID_PAGE_TOKEN,
    ERROR_INVALID_PARAMETER,
    ERROR_NOT_FOUND,
    MAX_PAGE_SIZE,
    MIN_PAGE_SIZE,
)

CORE_PREFIX = "/2010-04-01/"
ACCOUNT_STATUSES = ("active", "suspended", "closed")
CORE_DEFAULT_PAGE_SIZE = 50  # the spec: "The default is 50, and the maximum is 1000"
ACCOUNTS_LIST = "/2010-04-01/Accounts.json"
ACCOUNT_FETCH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-fA-F]{32})\.json$")
SUBRESOURCES = ("calls", "messages", "recordings", "usage", "keys", "balance")  # a few of the spec's


def _hex(*parts: object) -> str:
    return hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Subaccount:
    """A subaccount of the emulated parent: its own dataset (whose ``account_sid`` is its SID) and token."""

    dataset: Dataset
    auth_token: str
    status: str = "active"
    friendly_name: str = ""

    def __post_init__(self) -> None:
        if self.status not in ACCOUNT_STATUSES:
            raise ValueError(f"status must be one of {', '.join(ACCOUNT_STATUSES)}, not {self.status!r}")

    @property
    def sid(self) -> str:
        """The account's SID."""
        return self.dataset.account_sid

    def __repr__(self) -> str:  # the token is a secret, even an emulated one
        return f"Subaccount(sid={self.sid!r}, status={self.status!r})"

    @classmethod
    def generate(
        cls,
        count: int,
        *,
        seed: int = 100,
        flows: int = 2,
        engagements_per_flow: int = 50,
        statuses: dict[int, str] | None = None,
        **dataset_options: Any,
    ) -> list[Subaccount]:
        """``count`` subaccounts with distinct SIDs, tokens and flows (seed ``seed + n`` for the n-th).

        ``statuses`` maps an index to ``suspended`` or ``closed`` (the others are active).
        """
        out = []
        for n in range(count):
            sid = "AC" + _hex("subaccount", seed, n)
            dataset = Dataset(
                seed=seed + n,
                flows=flows,
                engagements_per_flow=engagements_per_flow,
                account_sid=sid,
                **dataset_options,
            )
            out.append(
                cls(
                    dataset,
                    auth_token=f"token-{_hex('token', seed, n)[:24]}",
                    status=(statuses or {}).get(n, "active"),
                    friendly_name=f"Customer {n + 1}",
                )
            )
        return out


@dataclass(frozen=True)
class Principal:
    """Who a request authenticated as: the account whose data it sees, and how it signed in."""

    account_sid: str
    username: str  # the Account SID or API key SID the request sent (tests check who read what)
    api_key: bool


@dataclass(frozen=True)
class _Account:
    sid: str
    owner_account_sid: str
    friendly_name: str
    status: str
    auth_token: str
    created: datetime


class AccountDirectory:
    """The parent account (the Emulator's credentials and dataset) and its subaccounts."""

    def __init__(self, parent: Credentials, parent_dataset: Dataset, subaccounts: Sequence[Subaccount] = ()) -> None:
        self.parent = parent
        self.datasets: dict[str, Dataset] = {parent.account_sid: parent_dataset}
        start = parent_dataset.start
        self.accounts: list[_Account] = [
            _Account(parent.account_sid, parent.account_sid, "Main account", "active", parent.auth_token,
                     start - timedelta(days=400))
        ]  # fmt: skip
        flow_owner: dict[str, str] = {f.sid: parent.account_sid for f in parent_dataset.flows}
        for n, sub in enumerate(subaccounts):
            if sub.sid in self.datasets:
                raise ValueError(f"subaccount {sub.sid} is given twice (or is the parent's SID)")
            for flow in sub.dataset.flows:
                if flow.sid in flow_owner:
                    raise ValueError(f"subaccount {sub.sid} has flow {flow.sid} of another account: use another seed")
                flow_owner[flow.sid] = sub.sid
            self.datasets[sub.sid] = sub.dataset
            self.accounts.append(
                _Account(sub.sid, parent.account_sid, sub.friendly_name or f"Subaccount {n + 1}", sub.status,
                         sub.auth_token, start - timedelta(days=300 - n))
            )  # fmt: skip
        self._by_sid = {a.sid: a for a in self.accounts}

    def authenticate(self, user: str, password: str) -> Principal | None:
        """The principal of these credentials; None if they are wrong or their account is not active."""
        if (user, password) == (self.parent.api_key_sid, self.parent.api_key_secret):
            return Principal(self.parent.account_sid, user, api_key=True)
        account = self._by_sid.get(user)
        if account is None or account.auth_token != password or account.status != "active":
            return None
        return Principal(account.sid, user, api_key=False)

    # ------------------------------------------------------------ the core API
    def handle(self, principal: Principal, origin: str, path: str, query: str) -> Response:
        """Answers a core API (``/2010-04-01/...``) GET for this principal."""
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        try:
            if path == ACCOUNTS_LIST:
                return Response(200, orjson.dumps(self._list(principal, params)))
            m = ACCOUNT_FETCH.match(path)
            if m is not None:
                account = self._visible(principal).get(m["sid"])
                if account is None:
                    raise ApiError(404, ERROR_NOT_FOUND, f"The requested resource {path} was not found")
                return Response(200, orjson.dumps(self._render(account, principal)))
        except ApiError as e:
            return e.response()
        return ApiError(404, ERROR_NOT_FOUND, f"The requested resource {path} was not found").response()

    def _visible(self, principal: Principal) -> dict[str, _Account]:
        if principal.account_sid == self.parent.account_sid:
            return dict(self._by_sid)
        return {principal.account_sid: self._by_sid[principal.account_sid]}

    def _render(self, a: _Account, principal: Principal) -> dict[str, Any]:
        uri = f"/2010-04-01/Accounts/{a.sid}.json"
        return {
            # the parent's API key may not see tokens (Twilio's answers to API keys can leave them out)
            "auth_token": None if principal.api_key else a.auth_token,
            "date_created": format_datetime(a.created),
            "date_updated": format_datetime(a.created + timedelta(days=1)),
            "friendly_name": a.friendly_name,
            "owner_account_sid": a.owner_account_sid,
            "sid": a.sid,
            "status": a.status,
            "subresource_uris": {name: f"/2010-04-01/Accounts/{a.sid}/{name.title()}.json" for name in SUBRESOURCES},
            "type": "Full",
            "uri": uri,
        }

    def _list(self, principal: Principal, params: dict[str, str]) -> dict[str, Any]:
        try:
            size = int(params.get("PageSize", str(CORE_DEFAULT_PAGE_SIZE)))
        except ValueError:
            size = -1
        if not MIN_PAGE_SIZE <= size <= MAX_PAGE_SIZE:
            raise ApiError(400, ERROR_INVALID_PARAMETER, f"Invalid PageSize: must be between 1 and {MAX_PAGE_SIZE}")
        try:
            page = int(params.get("Page", "0"))
        except ValueError:
            page = -1
        if page < 0:
            raise ApiError(400, ERROR_INVALID_PARAMETER, "Invalid Page: a whole number, 0 or more")
        status = params.get("Status")
        if status is not None and status not in ACCOUNT_STATUSES:
            raise ApiError(400, ERROR_INVALID_PARAMETER, "Invalid Status: active, suspended or closed")
        name = params.get("FriendlyName")
        rows = [
            a for a in self._visible(principal).values()
            if (status is None or a.status == status) and (name is None or a.friendly_name == name)
        ]  # fmt: skip
        start = 0
        token = params.get("PageToken")
        if token:  # PA + the SID after which the page starts
            after = token[2:]
            index = next((n for n, a in enumerate(rows) if a.sid == after), None)
            if not token.startswith("PA") or index is None:
                raise ApiError(400, ERROR_INVALID_PAGE_TOKEN, "Invalid PageToken")
            start = index + 1
        elif page:
            start = page * size
        chunk = rows[start : start + size]
        filters = {k: v for k, v in (("FriendlyName", name), ("Status", status)) if v is not None}

        def uri(p: int, tok: str | None = None) -> str:
            q = {**filters, "PageSize": str(size), "Page": str(p), **({"PageToken": tok} if tok else {})}
            return f"{ACCOUNTS_LIST}?{urlencode(q)}"

        more = start + size < len(rows)
        return {
            "accounts": [self._render(a, principal) for a in chunk],
            "end": start + max(0, len(chunk) - 1),
            "first_page_uri": uri(0),
            "next_page_uri": uri(page + 1, "PA" + chunk[-1].sid) if more and chunk else None,
            "page": page,
            "page_size": size,
            "previous_page_uri": uri(page - 1) if page > 0 else None,
            "start": start,
            "uri": uri(page, token),
        }
