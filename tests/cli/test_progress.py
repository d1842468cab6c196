"""Progress of `twilio-studio run`, as a user sees it: live in a terminal, plain lines in a pipe."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.kit.cli import cli, creds
from tests.kit.studio import AUTH_TOKEN, EmulatorFactory, expected_sids, expected_walks
from twilio_studio.emulator import Emulator

PAGE_SIZE = 20
ESCAPE = "\x1b"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PHONE = re.compile(r"\+\d{8,}")  # the emulator's contacts are +1555... numbers


def run_in_terminal(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> tuple[int, str]:
    """Runs the CLI with a pseudo-terminal (120 x 40) as its stdin, stdout and stderr.

    Returns its exit status and everything it wrote, escape codes included.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
    full_env.update({"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40", **env})
    proc = subprocess.Popen(
        [sys.executable, "-m", "twilio_studio.cli", *args], cwd=cwd, env=full_env,
        stdin=slave, stdout=slave, stderr=slave, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout  # a hang guard, not a timing assert
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        status = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return status, out.decode("utf-8", errors="replace")


def last_frame(text: str, title: str) -> str:
    """The last frame the live display drew (what stays on the screen), without escape codes."""
    redrawn = re.sub(r"\x1b\[\d*[AK]", "\n", text)  # cursor up, erase line: the next frame starts
    plain = ANSI.sub("", redrawn).replace("\r", "")
    *_, start = re.finditer(rf"^{re.escape(title)}: \d+ s *$", plain, re.MULTILINE)  # the table's title
    end = re.compile(r"^dlt: .*$", re.MULTILINE).search(plain, start.start())
    assert end is not None, plain[start.start() :]
    return plain[start.start() : end.end()]


def numbers(row: str) -> list[int]:
    return [int(n.replace(",", "")) for n in re.findall(r"(?<![\w/])\d[\d,]*(?![\w/])", row)]


def test_a_terminal_shows_a_live_table_per_flow_and_in_all_with_the_runs_counts(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = emulator_factory(flows=3, engagements=150)
    emu.inject("throttle", times=2, path_contains="/Engagements")
    args = ["run", "--pipelines-dir", str(tmp_path / "p"), "--pipeline-name", "live", "--page-size", str(PAGE_SIZE)]
    status, out = run_in_terminal(args, tmp_path, creds(emu))
    assert status == 0, out[-3000:]
    assert "\x1b[1A" in out  # the display was drawn over itself: live, not printed once
    frame = last_frame(out, "live -> duckdb:twilio_studio")
    walks = expected_walks(emu, PAGE_SIZE)
    for sid, (pages, read) in walks.items():
        row = next(line for line in frame.splitlines() if sid in line)
        assert numbers(row)[:3] == [pages, read, read], row  # pages, engagements read, new or changed
        assert "done in" in row
    total = next(line for line in frame.splitlines() if "all 3 flows" in line)
    engagements = len(expected_sids(emu))
    assert numbers(total)[1:4] == [sum(p for p, _ in walks.values()), engagements, engagements], total
    assert f"requests: {emu.stats.requests} requests, 0 in flight (limit 8), 2 answered 429" in frame
    dlt = frame.splitlines()[-1]
    assert re.fullmatch(r"dlt: extract .* done, normalize .* done, load (\d+) of \1 jobs done", dlt), dlt
    plain = ANSI.sub("", out)
    assert f"{engagements} engagements written ({engagements} new, 0 updated)" in plain
    assert not PHONE.search(plain) and AUTH_TOKEN not in plain


@pytest.mark.parametrize(
    ("progress", "lines", "escapes"),
    [
        pytest.param(None, True, False, id="auto_in_a_pipe_logs_lines"),
        pytest.param("log", True, False, id="log"),
        pytest.param("off", False, False, id="off"),
        pytest.param("live", False, True, id="live_forced_into_a_pipe"),
    ],
)
def test_outside_a_terminal_progress_is_plain_summary_lines(
    emulator_factory: EmulatorFactory, tmp_path: Path, progress: str | None, lines: bool, escapes: bool
) -> None:
    emu = emulator_factory(flows=3, engagements=150)
    args = ["run", "--pipelines-dir", str(tmp_path / "p"), "--page-size", str(PAGE_SIZE)]
    result = cli(*args, *(("--progress", progress) if progress else ()), cwd=tmp_path, env=creds(emu))
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert (ESCAPE in output) is escapes
    logged = [line for line in result.stderr.splitlines() if " INFO progress: " in line]
    assert bool(logged) is lines
    walks = expected_walks(emu, PAGE_SIZE)
    pages, engagements = sum(p for p, _ in walks.values()), len(expected_sids(emu))
    if lines:
        assert len(logged) < pages  # summaries, not a line per page
        assert not any(": page " in line for line in result.stderr.splitlines())
        last = logged[-1]
        assert f"3 of 3 flows done, {pages} pages, {engagements} engagements read" in last, last
        assert f"{engagements} new or changed; {emu.stats.requests} requests, 0 in flight" in last, last
        assert re.search(r"dlt extract .* done, normalize .* done, load (\d+) of \1 jobs done;", last), last
    assert f"{engagements} engagements written" in result.stdout
    assert not PHONE.search(output) and AUTH_TOKEN not in output


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        pytest.param(("--progress", "fancy"), {}, "error: --progress (or TWILIO_STUDIO_PROGRESS) is 'fancy'",
                     id="bad_option"),
        pytest.param((), {"TWILIO_STUDIO_PROGRESS": "bars"}, "error: --progress (or TWILIO_STUDIO_PROGRESS) is 'bars'",
                     id="bad_env_var"),
        pytest.param(("--progress-interval", "0"), {}, "error: --progress-interval is 0: give a number of seconds",
                     id="bad_interval"),
    ],
)  # fmt: skip
def test_bad_progress_options_are_refused_before_any_request(
    emulator: Emulator, tmp_path: Path, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    result = cli("run", "--pipelines-dir", str(tmp_path), *args, cwd=tmp_path, env={**creds(emulator), **env})
    assert result.returncode == 2
    assert message in result.stderr
    assert emulator.stats.requests == 0
