"""The environment's proxy and CA settings, as requests honours them, read once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kit.duck import Loaded
from tests.kit.loopback import ForwardProxy
from tests.kit.studio import EmulatorFactory, expected_sids, make_source
from twilio_studio.client import StudioClient

PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
                   "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # fmt: skip


@pytest.fixture(autouse=True)
def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_every_request_goes_through_the_proxy_the_environment_names(
    emulator_factory: EmulatorFactory, loaded: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulator_factory(flows=2, engagements=40)
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
        loaded.run(make_source(emu.base_url))
    assert {r[0] for r in loaded.sql("SELECT sid FROM engagements")} == expected_sids(emu)
    assert len(proxy.seen) == emu.stats.requests > 0  # each of them, and nothing went around it
    assert all(url.startswith(emu.base_url) for url in proxy.seen)


def test_no_proxy_keeps_its_hosts_off_the_proxy(
    emulator_factory: EmulatorFactory, loaded: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulator_factory(flows=1, engagements=20)
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        loaded.run(make_source(emu.base_url))
    assert loaded.scalar("SELECT count(*) FROM engagements") == len(expected_sids(emu))
    assert proxy.seen == []


def test_the_ca_bundle_of_the_environment_verifies_https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "corporate-ca.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    session = StudioClient("https://studio.twilio.com", "AC" + "0" * 32, "token")._session()
    assert session.verify == str(bundle)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bundle))
    assert StudioClient("https://studio.twilio.com", "AC" + "0" * 32, "token")._session().verify == str(bundle)
    monkeypatch.delenv("CURL_CA_BUNDLE")
    assert StudioClient("https://studio.twilio.com", "AC" + "0" * 32, "token")._session().verify is True
