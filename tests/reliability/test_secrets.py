"""The auth token and the API key secret never show.

Not in logs (DEBUG included), exception texts, the pipeline state, the trace, load packages or the
destination.

Loads run as the user runs them (the CLI, in a subprocess, every logger at DEBUG) with distinctive
secrets; then everything they printed and wrote is searched, decompressed and decoded: gzip'd load
package files, Parquet files, dlt's zlib+base64 state, the pickled trace, every text column of the
DuckDB file. Positive controls prove the search reads each of those places.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import os
import re
import subprocess
import sys
import traceback
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from tests.kit.duck import duckdb_pipeline
from tests.kit.studio import EmulatorFactory, make_source, source_env
from twilio_studio.emulator import Credentials, Dataset, Emulator, Faults

DEBUG_CLI = Path(__file__).with_name("debug_cli.py")
API_KEY_SID = "SK" + "b" * 32


def secrets() -> tuple[str, str, str]:
    """A distinctive auth token, API key secret and wrong token (letters and digits: no encoding variants)."""
    tag = uuid.uuid4().hex
    return f"AuthTok{tag}", f"ApiSecret{tag}", f"WrongTok{tag}"


def forms(secret: str, user: str) -> list[str]:
    """The secret, and the Basic auth header value that carries it."""
    return [secret, base64.b64encode(f"{user}:{secret}".encode()).decode()]


# ---------------------------------------------------------------------------- reading everything written
B64_RUN = re.compile(rb"[A-Za-z0-9+/=_-]{24,}")


def decoded(blob: bytes) -> Iterator[bytes]:
    """The blob, and whatever zlib+base64 payloads (dlt's compressed state) it carries, decoded."""
    yield blob
    for match in B64_RUN.finditer(blob):
        token = match.group()
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                yield zlib.decompress(decode(token + b"=" * (-len(token) % 4)))
                break
            except (binascii.Error, ValueError, zlib.error):
                continue


def file_contents(path: Path) -> Iterator[tuple[str, bytes]]:
    raw = path.read_bytes()
    yield "bytes", raw
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
        yield "gunzipped", raw
    if raw[:4] == b"PAR1":
        table = pq.read_table(io.BytesIO(raw))
        yield "parquet rows", repr(table.to_pylist()).encode()
    for n, payload in enumerate(decoded(raw)):
        if n:
            yield "zlib+base64 payload", payload


def duckdb_texts(db: Path) -> Iterator[tuple[str, bytes]]:
    """Every value of every table in every schema, as text; dlt's compressed state decoded too."""
    with duckdb.connect(str(db), read_only=True) as con:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
        ).fetchall()
        for schema, table in tables:
            for row in con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall():
                text = repr(row).encode()
                for n, payload in enumerate(decoded(text)):
                    yield (f"{schema}.{table}" + (" (decoded state)" if n else "")), payload


class Written:
    """Everything a set of runs left: their output, and every file under ``root`` (DuckDB files by SQL too)."""

    def __init__(self, root: Path, outputs: dict[str, str]) -> None:
        self.places: list[tuple[str, bytes]] = [(f"output of {k}", v.encode()) for k, v in outputs.items()]
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".wal")):
            self.places += [(f"{path.relative_to(root)} ({how})", data) for how, data in file_contents(path)]
            if path.suffix == ".duckdb":
                self.places += [(f"{path.name}: {where}", data) for where, data in duckdb_texts(path)]

    def where(self, needle: str) -> list[str]:
        """The places (log, state, files, ...) that hold ``needle``."""
        return sorted({place for place, data in self.places if needle.encode() in data})


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
    full.update(env, RUNTIME__LOG_LEVEL="DEBUG")
    return subprocess.run(
        [sys.executable, str(DEBUG_CLI), *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120
    )


# ---------------------------------------------------------------------------- tests
@pytest.mark.slow
def test_secrets_appear_nowhere_in_logs_state_packages_trace_or_destination(tmp_path: Path) -> None:
    token, api_secret, wrong = secrets()
    dataset = Dataset(seed=5, flows=2, engagements_per_flow=30)
    credentials = Credentials(
        account_sid=dataset.account_sid, auth_token=token, api_key_sid=API_KEY_SID, api_key_secret=api_secret
    )
    args = ["run", "--pipelines-dir", str(tmp_path / "pipelines"), "--pipeline-name", "secret_test"]
    outputs = {}
    with Emulator(dataset, credentials=credentials, faults=Faults(retry_after=0)) as emu:
        token_env = source_env(emu.base_url, token=token, account_sid=dataset.account_sid)
        key_env = {
            "SOURCES__TWILIO_STUDIO__API_KEY_SID": API_KEY_SID,
            "SOURCES__TWILIO_STUDIO__API_KEY_SECRET": api_secret,
            "SOURCES__TWILIO_STUDIO__BASE_URL": emu.base_url,
        }
        first = run_cli(args, token_env, tmp_path)
        assert first.returncode == 0, first.stderr[-3000:]
        outputs["a load with the auth token"] = first.stdout + first.stderr
        emu.advance(days=1)
        again = run_cli(args, key_env, tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        outputs["a load with the API key"] = again.stdout + again.stderr
        refused = run_cli(args, {**token_env, "SOURCES__TWILIO_STUDIO__AUTH_TOKEN": wrong}, tmp_path)
        assert refused.returncode == 1 and "answered HTTP 401" in refused.stderr, refused.stderr[-3000:]
        outputs["a load with a wrong token"] = refused.stdout + refused.stderr
        emu.advance(days=1)
        emu.inject("error", times=1000, path_contains="/Engagements")  # a 500 storm: the run fails
        storm = run_cli(args, {**key_env, "SOURCES__TWILIO_STUDIO__MAX_ATTEMPTS": "2"}, tmp_path)
        assert storm.returncode == 1 and "still failed with HTTP 50" in storm.stderr, storm.stderr[-3000:]
        outputs["a failing load with the API key"] = storm.stdout + storm.stderr  # its trace is the last one

    written = Written(tmp_path, outputs)
    leaks = {
        needle: written.where(needle)
        for needle in [*forms(token, dataset.account_sid), *forms(api_secret, API_KEY_SID),
                       *forms(wrong, dataset.account_sid)]
    }  # fmt: skip
    assert not any(leaks.values()), f"secrets found: { {k: v for k, v in leaks.items() if v} }"

    # positive controls: the search does read the places a leak would hide in
    flow_sid = dataset.flows[0].sid
    places = written.where(flow_sid)
    assert any("(zlib+base64 payload)" in p and "_dlt_pipeline_state" in p for p in places), places  # package
    assert any("(decoded state)" in p and "_dlt_pipeline_state" in p for p in places), places  # destination
    assert any("(parquet rows)" in p for p in places), places
    assert any(p.startswith("secret_test_data.duckdb: twilio_studio.engagements") for p in places), places
    assert "pipelines/secret_test/trace.pickle (bytes)" in written.where("still failed with HTTP 50")
    debug = outputs["a load with the auth token"]
    assert " urllib3.connectionpool DEBUG " in debug and "|[DEBUG]|" in debug  # our root DEBUG and dlt's
    assert "twilio_studio DEBUG failure" in outputs["a failing load with the API key"]  # the traceback, logged


@pytest.mark.parametrize(
    ("credentials", "fault"),
    [
        pytest.param({"auth_token": "wrong"}, None, id="401_wrong_token"),
        pytest.param({"account_sid": None, "auth_token": None, "api_key_sid": API_KEY_SID, "api_key_secret": "key"},
                     "error", id="500_storm_api_key"),
        pytest.param({}, "truncate", id="cut_short_auth_token"),
    ],
)  # fmt: skip
def test_exception_texts_and_traces_never_carry_the_secret(
    emulator_factory: EmulatorFactory, tmp_path: Path, credentials: dict[str, Any], fault: str | None
) -> None:
    token, api_secret, wrong = secrets()
    emu = emulator_factory(flows=1, engagements=5)
    real = Credentials(
        account_sid=emu.dataset.account_sid, auth_token=token, api_key_sid=API_KEY_SID, api_key_secret=api_secret
    )
    emu.credentials = emu.api.credentials = real  # the running emulator now accepts only these
    values = {"auth_token": token, **credentials}
    values = {k: {"wrong": wrong, "key": api_secret}.get(v, v) if isinstance(v, str) else v for k, v in values.items()}
    if fault:
        emu.inject(fault, times=1000, path_contains="/Engagements")
    pipeline = duckdb_pipeline(tmp_path, "exc")
    with pytest.raises(PipelineStepFailed) as err:
        pipeline.run(make_source(emu.base_url, max_attempts=2, **values), loader_file_format="parquet")
    texts = []
    exc: BaseException | None = err.value
    while exc is not None:
        texts += [str(exc), repr(exc), *traceback.format_exception(exc)]
        exc = exc.__cause__ or exc.__context__
    texts.append(str(pipeline.last_trace))
    texts.append(repr(pipeline.last_trace.asdict()))
    blob = "\n".join(texts)
    assert "GET /v1/Flows" in blob  # the texts are the real ones
    for secret in (token, api_secret, wrong):
        assert secret not in blob
