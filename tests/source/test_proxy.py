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


@pytest.mark.parametrize("no_proxy", [None, "127.0.0.1"], ids=["through_the_proxy", "no_proxy_host"])
def test_requests_take_the_proxy_the_environment_names_unless_no_proxy_lists_the_host(
    emulator_factory: EmulatorFactory, loaded: Loaded, monkeypatch: pytest.MonkeyPatch, no_proxy: str | None
) -> None:
    emu = emulator_factory(flows=2, engagements=40)
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
        if no_proxy:
            monkeypatch.setenv("NO_PROXY", no_proxy)
        loaded.run(make_source(emu.base_url))
    assert {r[0] for r in loaded.sql("SELECT sid FROM engagements")} == expected_sids(emu)
    if no_proxy:
        assert proxy.seen == []
    else:
        assert len(proxy.seen) == emu.stats.requests > 0  # each of them, and nothing went around it
        assert all(url.startswith(emu.base_url) for url in proxy.seen)


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
