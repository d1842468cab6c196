"""`twilio-studio emulator` credentials, and a help text for every option of every command.

The credentials come from options, Twilio's env vars or the documented defaults.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from tests.kit.cli import free_port
from twilio_studio.cli import parser
from twilio_studio.emulator import Credentials

DEFAULTS = Credentials()
ACCOUNT, TOKEN = "AC" + "b" * 32, "tok-from-test"
KEY, SECRET = "SK" + "c" * 32, "secret-from-test"


@contextmanager
def emulator_process(args: list[str], env: dict[str, str]) -> Iterator[str]:
    """The emulator command in a subprocess (no TWILIO_* variables but ``env``); yields its URL."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")} | env
    proc = subprocess.Popen(
        [sys.executable, "-m", "twilio_studio.cli", "emulator", "--port", str(port), "--flows", "1",
         "--engagements", "3", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/v1/Flows", timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the emulator did not start"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        assert TOKEN not in out and SECRET not in out  # secrets are never printed


def status(url: str, auth: tuple[str, str]) -> int:
    return requests.get(url + "/v1/Flows", auth=auth, timeout=5).status_code


@pytest.mark.parametrize(
    ("args", "env", "accepted", "refused"),
    [
        pytest.param(
            ["--account-sid", ACCOUNT, "--auth-token", TOKEN, "--api-key-sid", KEY, "--api-key-secret", SECRET],
            {}, [(ACCOUNT, TOKEN), (KEY, SECRET)], [(DEFAULTS.account_sid, DEFAULTS.auth_token)], id="options",
        ),
        pytest.param(
            [], {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_API_KEY": KEY,
                 "TWILIO_API_SECRET": SECRET},
            [(ACCOUNT, TOKEN), (KEY, SECRET)], [(DEFAULTS.account_sid, DEFAULTS.auth_token)], id="twilio_env_vars",
        ),
        pytest.param(
            ["--auth-token", "from-option"], {"TWILIO_AUTH_TOKEN": TOKEN},
            [(DEFAULTS.account_sid, "from-option")], [(DEFAULTS.account_sid, TOKEN)], id="option_beats_env",
        ),
        pytest.param(
            [], {}, [(DEFAULTS.account_sid, DEFAULTS.auth_token), (DEFAULTS.api_key_sid, DEFAULTS.api_key_secret)],
            [(ACCOUNT, TOKEN)], id="documented_defaults",
        ),
    ],
)  # fmt: skip
def test_emulator_credentials(
    args: list[str], env: dict[str, str], accepted: list[tuple[str, str]], refused: list[tuple[str, str]]
) -> None:
    with emulator_process(args, env) as url:
        assert [status(url, auth) for auth in accepted] == [200] * len(accepted)
        assert [status(url, auth) for auth in refused] == [401] * len(refused)
        flows = requests.get(url + "/v1/Flows", auth=accepted[0], timeout=5).json()["flows"]
        account = ACCOUNT if any(a == ACCOUNT for a, _ in accepted) else DEFAULTS.account_sid
        assert {f["account_sid"] for f in flows} == {account}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--account-sid", "ACnope"], "--account-sid (or TWILIO_ACCOUNT_SID) is not AC", id="bad_sid"),
        pytest.param(["--api-key-sid", "KEY"], "--api-key-sid (or TWILIO_API_KEY) is not SK", id="bad_key"),
        pytest.param(["--auth-token", ""], "--auth-token must be non-empty", id="empty_token"),
    ],
)
def test_bad_emulator_credentials_stop_before_it_starts(args: list[str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")}
    result = subprocess.run(
        [sys.executable, "-m", "twilio_studio.cli", "emulator", "--port", str(free_port()), *args],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: " + message) and "Traceback" not in result.stderr


def options(p: argparse.ArgumentParser, command: str = "twilio-studio") -> Iterator[tuple[str, argparse.Action]]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from options(sub, name)
        elif action.option_strings and action.dest != "help":
            yield command, action


def test_every_option_of_every_command_has_a_help_text() -> None:
    found = list(options(parser()))
    assert len(found) > 40 and {c for c, _ in found} >= {"twilio-studio", "run", "demo", "emulator", "report"}
    assert [f"{c} {a.option_strings[0]}" for c, a in found if not (a.help or "").strip()] == []
