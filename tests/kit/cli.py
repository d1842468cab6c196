"""The twilio-studio command as a user runs it: a real subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.kit.studio import source_env
from twilio_studio.emulator import Emulator


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m twilio_studio.cli *args`` in ``cwd``, without the caller's SOURCES__ variables."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "twilio_studio.cli", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def creds(emu: Emulator) -> dict[str, str]:
    """The environment that points the CLI at ``emu`` with its test credentials."""
    return source_env(emu.base_url)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
