"""Twilio's official Python SDK pointed at an emulator."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from tests.kit.spec import ACCOUNT_AUTH, API_KEY_AUTH, CREDENTIALS
from twilio_studio.emulator import Emulator

TWILIO_STUDIO = "https://studio.twilio.com"


class EmulatorHttpClient(TwilioHttpClient):
    """Sends the SDK's requests for https://studio.twilio.com to the emulator; other URLs go unchanged.

    Page URLs the SDK follows (meta.next_page_url) already name the emulator and pass through.
    """

    def __init__(self, base_url: str) -> None:
        super().__init__(timeout=30)
        self.base_url = base_url
        self.urls: list[str] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        """Sends the request to the emulator and records its URL (with the query)."""
        if url.startswith(TWILIO_STUDIO + "/"):
            url = self.base_url + url[len(TWILIO_STUDIO) :]
        params = kwargs.get("params") or (args[0] if args else None)
        self.urls.append(url + ("?" + urlencode(params) if params else ""))
        return super().request(method, url, *args, **kwargs)


def sdk_client(emulator: Emulator, credentials: str) -> tuple[Client, EmulatorHttpClient]:
    """A Twilio Client on ``emulator`` with its auth token (``"auth_token"``) or API key (``"api_key"``)."""
    http_client = EmulatorHttpClient(emulator.base_url)
    if credentials == "api_key":
        client = Client(*API_KEY_AUTH, account_sid=CREDENTIALS.account_sid, http_client=http_client)
    else:
        client = Client(*ACCOUNT_AUTH, http_client=http_client)
    return client, http_client
