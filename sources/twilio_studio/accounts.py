"""Many accounts in one run: discovery of subaccounts, a Studio client per account, failure bookkeeping.

Studio's paths name no account: studio.twilio.com serves the account whose credentials sign the
request (../shared/API-NOTES.md "Accounts and subaccounts"). So every account is read with its own
SID and auth token, by a client of its own; no request of one account ever carries another's
credentials. The parent's credentials only list the accounts (core API ``/2010-04-01/Accounts.json``).

One failing account (401, suspended, throttled past its retries, ...) must not stop the others, and
an exception inside dlt's extract would discard every account's rows. So in a multi-account run
(``subaccounts`` set) the walk of a failed account ends early, its rows are dropped from then on,
its cursors go back to where they were at the start, and the failure is logged at ERROR once and
recorded in the :class:`AccountsReport` of :func:`account_report` (the CLI's exit status, Dagster's
failed partition). A single-account run (``subaccounts`` unset) raises as it always did.

Cursors of the credentials' own account stay where single-account runs keep them (``flows`` in the
resource state); a subaccount's go under ``accounts.<AC...>.flows``: turning ``subaccounts`` on or
off reloads nothing.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterator, MutableMapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from twilio_studio.client import (
    AdaptiveLimit,
    ConfigurationError,
    PaginationError,
    Parse,
    RetryPolicy,
    StudioApiError,
    StudioClient,
    StudioError,
)
from twilio_studio.options import ValidOptions, _base_url, _shown, env_var, where
from twilio_studio.settings import (
    ACCOUNT_SID_RE,
    DEFAULT_ACCOUNTS_BASE_URL,
    MAX_TOTAL_CONCURRENCY_LIMIT,
)

logger = logging.getLogger("twilio_studio")

ACCOUNTS_PATH = "/2010-04-01/Accounts.json"
FLOW_IN_PATH = re.compile(r"/Flows/(FW[0-9a-fA-F]{32})")
CHILDREN = ("widgets", "flow_data", "flow_variables")


# ---------------------------------------------------------------------------- options
@dataclass(frozen=True)
class AccountOptions:
    """The multi-account options, checked: ``subaccounts`` is None, "all" or a list of AC SIDs."""

    subaccounts: str | list[str] | None
    accounts_base_url: str
    tokens: dict[str, str] = field(repr=False)
    max_total_concurrency: int

    def __repr__(self) -> str:  # never show a token
        return f"AccountOptions(subaccounts={self.subaccounts!r}, accounts_base_url={self.accounts_base_url!r}, ...)"


def validate_account_options(
    subaccounts: str | Sequence[str] | None,
    accounts_base_url: str,
    subaccount_auth_tokens: dict[str, str] | None,
    max_total_concurrency: int,
) -> AccountOptions:
    """Checks the multi-account options; raises ConfigurationError naming the option and the fix."""
    chosen: str | list[str] | None
    if subaccounts is None or (isinstance(subaccounts, str) and subaccounts.strip() == ""):
        chosen = None
    elif isinstance(subaccounts, str) and subaccounts.strip().lower() == "all":
        chosen = "all"
    else:
        items = [s.strip() for s in subaccounts.split(",")] if isinstance(subaccounts, str) else list(subaccounts)
        items = [s for s in items if s != ""]
        for sid in items:
            if not isinstance(sid, str) or not ACCOUNT_SID_RE.match(sid):
                raise ConfigurationError(
                    f'subaccounts: {_shown(sid)} is not an Account SID; give "all" or a list of SIDs, AC followed by '
                    f"32 hex digits ({where('subaccounts')})"
                )
        if not items:
            raise ConfigurationError(
                f'subaccounts is an empty list: give "all", Account SIDs, or leave it unset ({where("subaccounts")})'
            )
        chosen = list(dict.fromkeys(items))
    try:
        base = _base_url(accounts_base_url)
    except ConfigurationError:
        raise ConfigurationError(
            f"accounts_base_url: {_shown(accounts_base_url)} is not a plain http(s) URL; expected e.g. "
            f"{DEFAULT_ACCOUNTS_BASE_URL} ({where('accounts_base_url')})"
        ) from None
    tokens: dict[str, str] = {}
    if subaccount_auth_tokens is not None:
        if not isinstance(subaccount_auth_tokens, dict):
            raise ConfigurationError(
                "subaccount_auth_tokens must map Account SIDs to auth tokens, e.g. a table "
                "[sources.twilio_studio.subaccount_auth_tokens] in .dlt/secrets.toml, or JSON in "
                f"{env_var('subaccount_auth_tokens')}"
            )
        for sid, token in subaccount_auth_tokens.items():
            if not isinstance(sid, str) or not ACCOUNT_SID_RE.match(sid):
                raise ConfigurationError(
                    f"subaccount_auth_tokens: the key {_shown(sid)} is not an Account SID "
                    "(AC followed by 32 hex digits)"
                )
            if not isinstance(token, str) or not token:
                raise ConfigurationError(
                    f"subaccount_auth_tokens: the token of {sid} is empty or not text"
                )  # value never shown
            tokens[sid] = token
    if (
        isinstance(max_total_concurrency, bool)
        or not isinstance(max_total_concurrency, int)
        or not (1 <= max_total_concurrency <= MAX_TOTAL_CONCURRENCY_LIMIT)
    ):
        raise ConfigurationError(
            f"max_total_concurrency: {_shown(max_total_concurrency)} is out of range; use a whole number from 1 to "
            f"{MAX_TOTAL_CONCURRENCY_LIMIT} ({where('max_total_concurrency')})"
        )
    return AccountOptions(chosen, base, tokens, max_total_concurrency)


# ---------------------------------------------------------------------------- the run's report
@dataclass
class AccountsReport:
    """What a run did per account: rows read per table, accounts skipped (status) and failed (why)."""

    rows: dict[str, Counter[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, account_sid: str, table: str, n: int) -> None:
        """Adds ``n`` rows read of ``table`` to the account ``account_sid``."""
        with self._lock:
            self.rows.setdefault(account_sid, Counter())[table] += n

    def lines(self) -> list[str]:
        """One line per account: rows read per table, or why it was skipped or failed."""
        out = []
        for sid in sorted(set(self.rows) | set(self.failed) | set(self.skipped)):
            counts = ", ".join(f"{n} {t}" for t, n in sorted(self.rows.get(sid, Counter()).items())) or "no rows"
            if sid in self.failed:
                out.append(f"{sid}  FAILED: {self.failed[sid]}")
            elif sid in self.skipped:
                out.append(f"{sid}  skipped: {self.skipped[sid]}")
            else:
                out.append(f"{sid}  {counts}")
        return out


_REPORT: ContextVar[AccountsReport | None] = ContextVar("twilio_studio_accounts_report", default=None)


@contextlib.contextmanager
def account_report() -> Iterator[AccountsReport]:
    """Collects what the runs inside the block did per account (in this thread or task).

    For example::

        with account_report() as report:
            pipeline.run(twilio_studio_source(subaccounts="all"))
        if report.failed: ...  # {account SID: why}
    """
    report = AccountsReport()
    token = _REPORT.set(report)
    try:
        yield report
    finally:
        _REPORT.reset(token)


# ---------------------------------------------------------------------------- the accounts of a run
class SharedLimit:
    """An account's adaptive limit (halved on its 429s) within a bound for the whole run."""

    def __init__(self, account: AdaptiveLimit, run: threading.BoundedSemaphore) -> None:
        self.account = account
        self.run = run

    @property
    def limit(self) -> int:
        return self.account.limit

    def acquire(self, ahead: bool = False) -> None:
        self.account.acquire(ahead)  # a read-ahead has its share of the account's slots
        try:
            self.run.acquire()
        except BaseException:
            self.account.release(False, ahead)
            raise

    def release(self, throttled: bool, ahead: bool = False) -> None:
        self.run.release()
        self.account.release(throttled, ahead)


@dataclass
class Account:
    """One account of the run and the client that reads it with its own credentials."""

    sid: str | None  # None: a single-account run signed in with an API key (the SID comes with the rows)
    client: StudioClient = field(repr=False)
    own: bool  # the credentials' own account: its cursors stay at the single-account place
    flows: list[dict[str, Any]] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class AccountInfo:
    """An account as the Accounts list shows it, without its token."""

    sid: str
    friendly_name: str | None
    status: str | None
    owner_account_sid: str | None


def list_accounts(core: StudioClient) -> list[dict[str, Any]]:
    """Every page of ``/2010-04-01/Accounts.json``, for the credentials of ``core``.

    The core API's paging: a relative ``next_page_uri`` at the top level of the body.
    """
    url: str | None = core.url(ACCOUNTS_PATH, {"PageSize": 1000})
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    while url is not None:
        if url in seen:
            raise PaginationError("account discovery: the Accounts list returned the same page twice; stopping")
        seen.add(url)
        body = core.get(url, "account discovery")
        records, following = body.get("accounts"), body.get("next_page_uri")
        if not isinstance(records, list) or not (following is None or isinstance(following, str)):
            raise PaginationError(
                f"account discovery: GET {ACCOUNTS_PATH} returned no 'accounts' list; is accounts_base_url Twilio's "
                f"core API ({DEFAULT_ACCOUNTS_BASE_URL})?"
            )
        out.extend(a for a in records if isinstance(a, dict) and isinstance(a.get("sid"), str))
        if following is not None and (not following.startswith("/") or following.startswith("//")):
            raise PaginationError("account discovery: next_page_uri is not a path on accounts_base_url; stopping")
        url = core.base_url + following if following is not None else None
    return out


def accounts_of(
    *,
    account_sid: str | None = None,
    auth_token: str | None = None,
    api_key_sid: str | None = None,
    api_key_secret: str | None = None,
    accounts_base_url: str = DEFAULT_ACCOUNTS_BASE_URL,
    status: str | None = "active",
) -> list[AccountInfo]:
    """The accounts these credentials can list (their own and its subaccounts), without tokens.

    For orchestrators: one partition per account (see ``twilio_studio.dagster``).
    """
    username, password = (api_key_sid, api_key_secret) if api_key_sid else (account_sid, auth_token)
    if not username or not password:
        raise ConfigurationError("accounts_of: give account_sid and auth_token, or api_key_sid and api_key_secret")
    core = StudioClient(_base_url(accounts_base_url), username, password)
    return [
        AccountInfo(a["sid"], a.get("friendly_name"), a.get("status"), a.get("owner_account_sid"))
        for a in list_accounts(core)
        if status is None or a.get("status") == status
    ]


def once_each(flows: list[Any]) -> list[Any]:
    """The flows, each SID once: a list that moved while it was read can show a flow on two pages.

    Walked twice, its engagements would be loaded twice in one run; a first load appends them.
    """
    seen: set[str] = set()
    out = []
    for flow in flows:
        sid = flow.get("sid") if isinstance(flow, dict) else None
        if isinstance(sid, str):
            if sid in seen:
                continue
            seen.add(sid)
        out.append(flow)
    return out


class AccountsRun:
    """The accounts one source reads: discovered once, each with its client, flows and cursors."""

    def __init__(self, options: ValidOptions, accounts: AccountOptions, account_sid: str | None) -> None:
        self.options = options
        self.settings = accounts
        self.multi = accounts.subaccounts is not None
        self.parent_sid = account_sid  # None when the credentials are an API key
        self.retry = RetryPolicy(max_attempts=options.max_attempts, timeout=options.request_timeout)
        self.max_concurrency = accounts.max_total_concurrency if self.multi else options.max_concurrency
        self._run_limit = threading.BoundedSemaphore(accounts.max_total_concurrency)
        self._lock = threading.Lock()  # the shared dicts below
        self._once = threading.RLock()  # discovery of accounts and flows, once per source
        self._accounts: list[Account] | None = None
        self._flows: list[dict[str, Any]] | None = None
        self.flow_owner: dict[str, Account] = {}
        self.failed: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        self._snapshots: list[tuple[str, MutableMapping[str, Any], dict[str, Any]]] = []
        self.client: Any = None  # set by accounts(): the one client, or the router of a multi-account run
        self.report: AccountsReport | None = None

    # ------------------------------------------------------------------ discovery
    def _studio_client(self, username: str, password: str) -> StudioClient:
        client = StudioClient(
            self.options.base_url, username, password, retry=self.retry, max_concurrency=self.options.max_concurrency
        )
        if self.multi:
            client.limit = SharedLimit(client.limit, self._run_limit)  # type: ignore[assignment]
        return client

    def accounts(self) -> list[Account]:
        """The accounts to read, discovered on first use (before any Studio request)."""
        with self._once:
            if self._accounts is None:
                # the report of the block this run's extract runs in: the walk's threads do not see it
                self.report = _REPORT.get()
                if not self.multi:
                    client = self._studio_client(self.options.username, self.options.password)
                    self._accounts = [Account(self.parent_sid, client, own=True)]
                    self.client = client
                else:
                    self._accounts = self._discover()
                    self.client = AccountRouter(self)
            return self._accounts

    def _discover(self) -> list[Account]:
        settings = self.settings
        core = StudioClient(
            settings.accounts_base_url,
            self.options.username,
            self.options.password,
            retry=self.retry,
            max_concurrency=4,
        )
        if settings.subaccounts == "all":
            listed = list_accounts(core)
        else:
            listed = []
            for sid in settings.subaccounts or []:
                try:
                    listed.append(core.get(core.url(f"/2010-04-01/Accounts/{sid}.json"), f"account {sid}"))
                except StudioApiError as e:
                    if e.status != 404:
                        raise
                    self.fail(
                        sid, "not found among the accounts these credentials can read; is it a subaccount of theirs?"
                    )
        parent = self.parent_sid or next((a["sid"] for a in listed if a.get("owner_account_sid") == a.get("sid")), None)
        out: list[Account] = []
        for item in listed:
            sid = item["sid"]
            if sid in self.failed:
                continue
            status = item.get("status")
            if status != "active":
                if settings.subaccounts == "all":
                    self._skip(sid, f"its status is {status}")
                else:
                    self.fail(
                        sid,
                        f"its status is {status}: Twilio refuses its requests; reactivate it or leave it out "
                        "of subaccounts",
                    )
                continue
            if sid == parent:
                out.append(Account(sid, self._studio_client(self.options.username, self.options.password), own=True))
                continue
            token = settings.tokens.get(sid) or item.get("auth_token")
            if not isinstance(token, str) or not token:
                self.fail(
                    sid,
                    "the Accounts list gave no auth token for it (as when the parent signs in with an API key), and "
                    "Studio must be read with the subaccount's own credentials: give its token as "
                    f"sources.twilio_studio.subaccount_auth_tokens.{sid} in .dlt/secrets.toml, or in "
                    f'{env_var("subaccount_auth_tokens")} as JSON {{"{sid}": "..."}}',
                )
                continue
            out.append(Account(sid, self._studio_client(sid, token), own=False))
        logger.info("accounts: %d to load, %d skipped, %d not loadable", len(out), len(self.skipped), len(self.failed))
        return out

    def _skip(self, sid: str, why: str) -> None:
        self.skipped[sid] = why
        logger.info("account %s: skipped, %s", sid, why)
        if self.report is not None:
            self.report.skipped[sid] = why

    # ------------------------------------------------------------------ flows
    def flow_items(self) -> list[dict[str, Any]]:
        """The flows to load of every account, read once per source and shared by every resource."""
        with self._once:
            if self._flows is None:
                accounts = self.accounts()
                if self.multi:
                    workers = max(1, min(len(accounts), self.settings.max_total_concurrency))
                    with ThreadPoolExecutor(workers, thread_name_prefix="studio-accounts") as pool:
                        list(pool.map(self._account_flows, accounts))
                    wanted = self.options.flow_sids
                    if wanted is not None:
                        missing = sorted(set(wanted) - set(self.flow_owner))
                        if missing:
                            logger.warning("flow_sids: %s found in none of the accounts read", ", ".join(missing))
                else:
                    accounts[0].flows = self._single_account_flows(accounts[0].client)
                self._flows = once_each([f for a in accounts if a.sid not in self.failed for f in a.flows])
            return self._flows

    def _single_account_flows(self, client: StudioClient) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        if self.options.flow_sids is None:
            for page in client.pages("/v1/Flows", "flows", "flow discovery", {"PageSize": 1000}):
                found.extend(page)
            logger.info("discovered %d flows", len(found))
        else:
            found.extend(client.get(client.url(f"/v1/Flows/{sid}"), f"flow {sid}") for sid in self.options.flow_sids)
        return found

    def _account_flows(self, account: Account) -> None:
        wanted = self.options.flow_sids
        found: list[dict[str, Any]] = []
        try:
            for page in account.client.pages(
                "/v1/Flows", "flows", f"account {account.sid}, flow discovery", {"PageSize": 1000}
            ):
                found.extend(f for f in page if isinstance(f, dict) and (wanted is None or f.get("sid") in wanted))
        except StudioError as e:
            self.fail(account.sid, str(e))
            return
        with self._lock:
            for f in found:
                self.flow_owner[f["sid"]] = account
            account.flows = found
        logger.info("account %s: %d flows", account.sid, len(found))

    # ------------------------------------------------------------------ failures and cursors
    def fail(self, sid: str | None, message: str) -> None:
        """Records that an account did not load: ERROR once, cursors back to the start of the run."""
        key = sid or "?"
        with self._lock:
            if key in self.failed:
                return
            self.failed[key] = message
            for owner, place, before in self._snapshots:
                if owner == key:
                    place.clear()
                    place.update(copy.deepcopy(before))
        logger.error("account %s did not load: %s", key, message)
        if self.report is not None:
            self.report.failed[key] = message

    def raise_if_alone(self) -> None:
        """Raises the failure of a run's only account, so that its orchestrator task fails.

        No other account's rows are lost by it, and an orchestrator's task for that account (Airflow,
        Dagster) then fails as it should.
        """
        if self.multi and self.failed and len({a.sid for a in self._accounts or []} | set(self.failed)) == 1:
            sid, message = next(iter(self.failed.items()))
            raise StudioError(f"account {sid} did not load: {message}")

    def cursors(self, resource_state: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """The per-flow cursor store of a resource.

        The plain dict of a single-account run, else a view that files each flow's cursor under its
        account and ignores writes for a failed account.
        """
        own = resource_state.setdefault("flows", {})
        if not self.multi:
            return own  # type: ignore[no-any-return]
        places: dict[str, MutableMapping[str, Any]] = {}
        for account in self.accounts():
            assert account.sid is not None
            if account.own:
                place = own
            else:
                place = resource_state.setdefault("accounts", {}).setdefault(account.sid, {}).setdefault("flows", {})
            places[account.sid] = place
            with self._lock:
                self._snapshots.append((account.sid, place, copy.deepcopy(dict(place))))
        return FlowStates(self, places)

    def account_of(self, flow_sid: Any) -> Account | None:
        """The account that owns the flow ``flow_sid``; None if no account of the run does."""
        return self.flow_owner.get(flow_sid) if isinstance(flow_sid, str) else None

    # ------------------------------------------------------------------ rows
    def keep(self, rows: list[dict[str, Any]], table: str, nested: bool) -> list[dict[str, Any]]:
        """The rows to load: those of accounts that have not failed, each tagged with its account's SID.

        Each row (and with ``nested``, each of its child rows) carries the SID of the account it was read
        from.
        """
        report = self.report
        if self.multi:
            kept = []
            for row in rows:
                account = self.account_of(row.get("flow_sid") if table != "flows" else row.get("sid"))
                if account is None or account.sid in self.failed:
                    continue
                row["account_sid"] = account.sid
                kept.append(row)
            rows = kept
        elif self.parent_sid is not None:
            for row in rows:
                if row.get("account_sid") is None:
                    row["account_sid"] = self.parent_sid
        if nested:
            for row in rows:
                stamp_children(row, row.get("account_sid"))
        if report is not None:
            per: Counter[str] = Counter(str(r.get("account_sid")) for r in rows)
            for sid, n in per.items():
                report.count(sid, table, n)
        return rows


class FlowStates(MutableMapping[str, Any]):
    """Per-flow cursors, each kept in the state of the flow's own account."""

    def __init__(self, run: AccountsRun, places: dict[str, MutableMapping[str, Any]]) -> None:
        self.run = run
        self.places = places

    def _place(self, flow_sid: str) -> tuple[str | None, MutableMapping[str, Any] | None]:
        account = self.run.account_of(flow_sid)
        if account is None or account.sid is None:
            return None, None
        return account.sid, self.places.get(account.sid)

    def __getitem__(self, flow_sid: str) -> Any:
        _, place = self._place(flow_sid)
        if place is None:
            raise KeyError(flow_sid)
        return place[flow_sid]

    def __setitem__(self, flow_sid: str, value: Any) -> None:
        sid, place = self._place(flow_sid)
        if place is None or sid in self.run.failed:
            return  # a failed account's cursors stay where they were
        place[flow_sid] = value

    def __delitem__(self, flow_sid: str) -> None:
        _, place = self._place(flow_sid)
        if place is not None:
            del place[flow_sid]

    def __iter__(self) -> Iterator[str]:
        for place in self.places.values():
            yield from place

    def __len__(self) -> int:
        return sum(len(p) for p in self.places.values())


def stamp_children(row: dict[str, Any], account_sid: Any) -> None:
    """Puts ``account_sid`` on a nested row's child rows (widgets and their fields, flow data, variables)."""
    for key in CHILDREN:
        for child in row.get(key) or ():
            child["account_sid"] = account_sid
            for leaf in child.get("fields") or ():
                leaf["account_sid"] = account_sid


def stamp_tables(tables: Sequence[tuple[str, pa.Table]], root: str, owner: str) -> list[tuple[str, pa.Table]]:
    """Arrow child tables with the ``account_sid`` of their owner row in the root table of the same batch."""
    roots = [t for name, t in tables if name == root]
    if not roots:
        return list(tables)
    sids, accounts = roots[0]["sid"], roots[0]["account_sid"]
    out = []
    for name, table in tables:
        if name != root and "account_sid" not in table.column_names and owner in table.column_names:
            found = pc.take(accounts, pc.index_in(table[owner], value_set=sids))
            table = table.append_column("account_sid", found)
        out.append((name, table))
    return out


class AccountRouter:
    """The walker's client in a multi-account run: each request goes to the account that owns its flow.

    Each request goes to the client of the account that owns the flow in its path, with that
    account's credentials. A failed account's walks end (an empty page, an empty body) instead of
    raising, so the other accounts go on.
    """

    def __init__(self, run: AccountsRun) -> None:
        self.run = run
        self.base_url = run.options.base_url

    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        query = f"?{urlencode(params)}" if params else ""
        return f"{self.base_url}{path}{query}"

    def _account(self, path: str) -> Account:
        m = FLOW_IN_PATH.search(path)
        account = self.run.account_of(m.group(1)) if m else None
        if account is None:
            raise StudioError(f"{path}: a request for a flow of no account of this run")  # a bug, not a user error
        return account

    def pages(
        self,
        path: str,
        key: str,
        what: str,
        params: dict[str, Any] | None = None,
        parse: Parse = orjson.loads,
        ahead: Executor | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        account = self._account(path)
        if account.sid in self.run.failed:
            return
        try:
            yield from account.client.pages(path, key, f"account {account.sid}, {what}", params, parse, ahead)
        except StudioError as e:
            self.run.fail(account.sid, str(e))

    def get(self, url: str, what: str, parse: Parse = orjson.loads) -> dict[str, Any]:
        account = self._account(urlsplit(url).path)
        if account.sid not in self.run.failed:
            try:
                return account.client.get(url, f"account {account.sid}, {what}", parse)
            except StudioError as e:
                self.run.fail(account.sid, str(e))
        return {}


__all__ = [
    "AccountInfo",
    "AccountOptions",
    "AccountsReport",
    "AccountsRun",
    "account_report",
    "accounts_of",
    "validate_account_options",
]
