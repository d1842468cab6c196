"""Subaccounts: every account read with its own credentials.

Its rows are marked with its SID, its cursors kept apart, and one failing account leaves the others
loaded.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from tests.kit.duck import Loaded
from tests.kit.scenarios import EVERY_TABLE, active, sids_of
from tests.kit.studio import ACCOUNT_SID, AUTH_TOKEN, EmulatorFactory, make_source
from twilio_studio import ConfigurationError, account_report
from twilio_studio.emulator import Credentials, Emulator, Faults, Subaccount

PARENT = ACCOUNT_SID
STATUSES = {2: "suspended", 3: "closed"}
API_KEY = Credentials()


@pytest.fixture
def multi(emulator_factory: EmulatorFactory) -> Callable[..., Emulator]:
    """A parent of two flows of 30 engagements with ``count`` subaccounts of two flows of 25 each."""

    def start(count: int = 4, statuses: dict[int, str] | None = None, faults: Faults | None = None) -> Emulator:
        subs = Subaccount.generate(
            count, flows=2, engagements_per_flow=25, statuses=STATUSES if statuses is None else statuses
        )
        return emulator_factory(flows=2, engagements=30, seed=11, faults=faults, subaccounts=subs)

    return start


def source(emu: Emulator, **options: Any) -> Any:
    options.setdefault("subaccounts", "all")
    options.setdefault("accounts_base_url", emu.base_url)
    return make_source(emu.base_url, **options)


def token_of(emu: Emulator, sid: str) -> str:
    return next(a.auth_token for a in emu.accounts.accounts if a.sid == sid)


def studio_requests(emu: Emulator) -> list[tuple[str, str, str]]:
    return [s for s in emu.stats.served if not s[2].startswith("/2010-04-01/")]


def test_every_account_loads_with_its_own_sid_on_every_row_of_every_table(
    multi: Callable[..., Emulator], loaded: Loaded
) -> None:
    emu = multi()
    with account_report() as report:
        loaded.run(source(emu).with_resources("flows", "engagements", "engagement_steps"))
    for table in EVERY_TABLE:
        by_account = dict(loaded.sql(f"SELECT account_sid, count(*) FROM {table} GROUP BY 1"))
        assert set(by_account) == set(active(emu)), table  # no null, no suspended or closed account
    for account in active(emu):
        assert {r[0] for r in loaded.sql("SELECT sid FROM engagements WHERE account_sid = ?", account)} == sids_of(
            emu, account
        )
        flows = {f.sid for f in emu.accounts.datasets[account].flows}
        assert {r[0] for r in loaded.sql("SELECT sid FROM flows WHERE account_sid = ?", account)} == flows
    # a child row's account is its engagement's
    assert (
        loaded.scalar(
            "SELECT count(*) FROM engagements__widgets w JOIN engagements e ON e.sid = w.engagement_sid "
            "WHERE e.account_sid <> w.account_sid"
        )
        == 0
    )
    assert report.failed == {}
    assert report.skipped == {a.sid: f"its status is {a.status}" for a in emu.accounts.accounts if a.status != "active"}
    assert {sid: c["engagements"] for sid, c in report.rows.items()} == {a: len(sids_of(emu, a)) for a in active(emu)}


def test_no_studio_request_carries_another_accounts_credentials(multi: Callable[..., Emulator], loaded: Loaded) -> None:
    emu = multi()
    loaded.run(source(emu).with_resources("flows", "engagements", "engagement_steps"))
    served = studio_requests(emu)
    assert {user for user, _, _ in served} == set(active(emu))
    assert all(user == account for user, account, _ in served)  # each request saw the data of who signed it
    # the parent's credentials only listed the accounts
    core = [s for s in emu.stats.served if s[2].startswith("/2010-04-01/")]
    assert core and {user for user, _, _ in core} == {PARENT}
    # each account's flows were asked for with that account's own credentials
    for account in active(emu):
        for flow in emu.accounts.datasets[account].flows:
            assert {u for u, _, p in served if flow.sid in p} == {account}


def test_a_list_of_accounts_loads_those_only(multi: Callable[..., Emulator], loaded: Loaded) -> None:
    emu = multi()
    chosen = active(emu)[1:3]
    loaded.run(source(emu, subaccounts=chosen))
    assert {r[0] for r in loaded.sql("SELECT DISTINCT account_sid FROM engagements")} == set(chosen)
    assert {u for u, _, _ in studio_requests(emu)} == set(chosen)


def test_a_failing_account_leaves_the_others_loaded_and_its_cursors_where_they_were(
    multi: Callable[..., Emulator], loaded: Loaded, caplog: pytest.LogCaptureFixture
) -> None:
    emu = multi(statuses={})
    broken = active(emu)[2]
    for flow in emu.accounts.datasets[broken].flows:  # every attempt of its lists fails
        emu.inject("error", times=6, path_contains=f"{flow.sid}/Engagements")
    with caplog.at_level(logging.ERROR, logger="twilio_studio"), account_report() as report:
        loaded.run(source(emu, max_attempts=2).with_resources("flows", "engagements", "engagement_steps"))
    assert set(report.failed) == {broken} and "HTTP 50" in report.failed[broken]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and r.name == "twilio_studio"]
    assert len(errors) == 1 and errors[0].startswith(f"account {broken} did not load")
    for account in active(emu):
        if account != broken:
            got = {r[0] for r in loaded.sql("SELECT sid FROM engagements WHERE account_sid = ?", account)}
            assert got == sids_of(emu, account)
    state = loaded.pipeline.state["sources"]["twilio_studio"]["resources"]["engagements"]
    assert state["accounts"][broken]["flows"] == {}  # nothing saved: the next run reads it from the start
    assert set(state["flows"]) == {f.sid for f in emu.accounts.datasets[PARENT].flows}
    emu.clear_faults()
    with account_report() as again:
        loaded.run(source(emu).with_resources("flows", "engagements", "engagement_steps"))
    assert again.failed == {}
    assert {r[0] for r in loaded.sql("SELECT sid FROM engagements WHERE account_sid = ?", broken)} == sids_of(
        emu, broken
    )
    assert again.rows[broken]["engagement_steps"] > 0  # its steps too, though its first run had loaded some rows
    assert "engagements" not in again.rows[active(emu)[0]]  # the others: nothing new


@pytest.mark.parametrize(
    ("chosen", "message"),
    [(2, "its status is suspended"), (3, "its status is closed"), (None, "not found among the accounts")],
    ids=["suspended", "closed", "unknown"],
)
def test_an_account_asked_for_that_cannot_load_is_a_failure(
    multi: Callable[..., Emulator], loaded: Loaded, chosen: int | None, message: str
) -> None:
    emu = multi()
    sid = emu.accounts.accounts[1 + chosen].sid if chosen is not None else "AC" + "0" * 32
    ok = active(emu)[1]
    with account_report() as report:
        loaded.run(source(emu, subaccounts=[sid, ok]))
    assert list(report.failed) == [sid] and message in report.failed[sid]
    assert {r[0] for r in loaded.sql("SELECT DISTINCT account_sid FROM engagements")} == {ok}


def test_api_key_parent_without_tokens_says_per_account_how_to_give_them_before_any_studio_request(
    multi: Callable[..., Emulator], loaded: Loaded, tmp_path: Path
) -> None:
    emu = multi()
    key = {"account_sid": None, "auth_token": None, "api_key_sid": API_KEY.api_key_sid,
           "api_key_secret": API_KEY.api_key_secret}  # fmt: skip
    with account_report() as report:
        loaded.run(source(emu, **key))
    subs = [a for a in active(emu) if a != PARENT]
    assert set(report.failed) == set(subs)
    for sid in subs:
        assert f"sources.twilio_studio.subaccount_auth_tokens.{sid}" in report.failed[sid]
        assert "SOURCES__TWILIO_STUDIO__SUBACCOUNT_AUTH_TOKENS" in report.failed[sid]
    assert {u for u, _, _ in studio_requests(emu)} == {API_KEY.api_key_sid}  # only the parent's own data was read
    # given the tokens, they load
    tokens = {sid: token_of(emu, sid) for sid in subs}
    with account_report() as report:
        loaded.run(source(emu, subaccount_auth_tokens=tokens, **key))
    assert report.failed == {}
    assert {r[0] for r in loaded.sql("SELECT DISTINCT account_sid FROM engagements")} == set(active(emu))


def test_a_wrong_token_fails_that_account_only(multi: Callable[..., Emulator], loaded: Loaded) -> None:
    emu = multi()
    wrong = active(emu)[1]
    with account_report() as report:
        loaded.run(source(emu, subaccount_auth_tokens={wrong: "not-its-token"}))
    assert list(report.failed) == [wrong] and "HTTP 401" in report.failed[wrong]
    assert {r[0] for r in loaded.sql("SELECT DISTINCT account_sid FROM engagements")} == set(active(emu)) - {wrong}


def test_upgrading_to_subaccounts_reloads_nothing_of_the_own_account(
    multi: Callable[..., Emulator], loaded: Loaded
) -> None:
    emu = multi()
    loaded.run(make_source(emu.base_url))  # a single-account run, as before subaccounts existed
    assert {r[0] for r in loaded.sql("SELECT DISTINCT account_sid FROM engagements")} == {PARENT}
    with account_report() as report:
        loaded.run(source(emu))
    assert "engagements" not in report.rows.get(PARENT, {})  # its cursors were found where they were
    assert {r[0] for r in loaded.sql("SELECT DISTINCT account_sid FROM engagements")} == set(active(emu))
    with account_report() as report:  # and back: a single-account run finds the parent's cursors
        loaded.run(make_source(emu.base_url))
    assert report.rows.get(PARENT, Counter())["engagements"] == 0


def test_requests_stay_within_each_accounts_limit_and_the_runs_bound(
    multi: Callable[..., Emulator], loaded: Loaded
) -> None:
    # the emulator answers 429 above 1 request of one account at once: each account halves its own limit
    emu = multi(count=5, statuses={}, faults=Faults(latency=0.01, max_concurrency=1, retry_after=None))
    with account_report() as report:
        loaded.run(source(emu, max_concurrency=4, max_total_concurrency=6))
    assert report.failed == {}
    assert emu.stats.max_total_in_flight <= 6  # the run's bound (5 accounts x 4 unbounded)
    assert emu.stats.by_status[429] > 0
    assert {r[0] for r in loaded.sql("SELECT DISTINCT account_sid FROM engagements")} == set(active(emu))


def test_no_token_in_logs_state_or_destination(
    multi: Callable[..., Emulator], loaded: Loaded, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    emu = multi(statuses={})
    wrong = active(emu)[1]
    with caplog.at_level(logging.DEBUG):
        loaded.run(
            source(emu, subaccount_auth_tokens={wrong: "wrong-token-1234"}).with_resources("flows", "engagements")
        )
    tokens = [a.auth_token for a in emu.accounts.accounts] + ["wrong-token-1234", AUTH_TOKEN]
    state = json.dumps(loaded.pipeline.state, default=str)
    trace = repr(loaded.pipeline.last_trace.asdict())
    files = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for token in tokens:
        assert token not in caplog.text and token not in state and token not in trace
        assert token.encode() not in files  # the DuckDB file and every file dlt left behind


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"subaccounts": ["AC123"]}, "subaccounts: 'AC123' is not an Account SID"),
        ({"subaccounts": "some"}, "subaccounts: 'some' is not an Account SID"),
        ({"subaccounts": []}, "subaccounts is an empty list"),
        ({"accounts_base_url": "api.twilio.com"}, "accounts_base_url: 'api.twilio.com' is not a plain http(s) URL"),
        ({"subaccount_auth_tokens": {"ACx": "t"}}, "subaccount_auth_tokens: the key 'ACx' is not an Account SID"),
        ({"subaccount_auth_tokens": {"AC" + "1" * 32: ""}}, "the token of AC1111"),
        ({"max_total_concurrency": 0}, "max_total_concurrency: 0 is out of range"),
    ],
    ids=["short-sid", "not-all", "empty-list", "url-without-scheme", "token-key", "empty-token", "total-zero"],
)
def test_bad_options_are_refused_before_any_request(
    multi: Callable[..., Emulator], options: dict[str, Any], message: str
) -> None:
    emu = multi()
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        source(emu, **options)
    assert emu.stats.requests == 0


def test_a_runs_only_account_failing_raises_as_a_single_account_run_does(
    multi: Callable[..., Emulator], loaded: Loaded
) -> None:
    emu = multi()
    wrong = active(emu)[1]
    with pytest.raises(PipelineStepFailed, match=f"account {wrong} did not load: .*HTTP 401"):
        loaded.run(source(emu, subaccounts=[wrong], subaccount_auth_tokens={wrong: "not-its-token"}))
    assert studio_requests(emu) == [] and emu.stats.by_status[401] == 1  # refused, and never sent as another
