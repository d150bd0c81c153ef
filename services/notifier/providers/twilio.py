"""SMS and voice through the official twilio library's async client."""

from __future__ import annotations

import asyncio
from xml.sax.saxutils import escape

from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from notifier.providers import OutgoingMessage, ProviderResult
from notifier.providers.errors import classify

# Voices Twilio's <Say> supports for our template languages.
SAY_LANGUAGES = {"en": "en-GB", "cy": "cy-GB"}


class TwilioClient:
    """One client (and one HTTP session) for the life of the service. The HTTP client is built
    with no retries of its own: tenacity in the dispatcher is the only retry layer."""

    def __init__(self, account_sid: str, auth_token: str, api_base: str, *,
                 sender: str | None, messaging_service_sid: str | None,
                 status_callback: str, timeout: float) -> None:
        # max_retries=None: the library adds no retry layer of its own. Its timeout setting is
        # not applied to requests, so every call is bounded with asyncio.timeout instead.
        self.http = AsyncTwilioHttpClient(max_retries=None)
        self.timeout = timeout
        self.client = Client(account_sid, auth_token, http_client=self.http)
        self.client.api.base_url = api_base.rstrip("/")
        self.sender = sender
        self.messaging_service_sid = messaging_service_sid
        self.status_callback = status_callback

    async def close(self) -> None:
        await self.http.close()


class TwilioSms:
    def __init__(self, twilio: TwilioClient) -> None:
        self._twilio = twilio

    async def send(self, message: OutgoingMessage) -> ProviderResult:
        sender = (
            {"messaging_service_sid": self._twilio.messaging_service_sid}
            if self._twilio.messaging_service_sid
            else {"from_": self._twilio.sender}
        )
        try:
            async with asyncio.timeout(self._twilio.timeout):
                created = await self._twilio.client.messages.create_async(
                    to=message.to, body=message.body,
                    status_callback=self._twilio.status_callback, **sender,
                )
        except Exception as error:  # noqa: BLE001 - every failure is classified
            raise classify(error) from error
        return ProviderResult(provider_id=str(created.sid))

    async def close(self) -> None:
        await self._twilio.close()


class TwilioVoice:
    def __init__(self, twilio: TwilioClient) -> None:
        self._twilio = twilio

    async def send(self, message: OutgoingMessage) -> ProviderResult:
        language = SAY_LANGUAGES.get(message.language, "en-GB")
        twiml = (f'<Response><Say language="{language}">{escape(message.body)}</Say>'
                 f'<Pause length="1"/><Say language="{language}">{escape(message.body)}</Say>'
                 "</Response>")
        try:
            async with asyncio.timeout(self._twilio.timeout):
                created = await self._twilio.client.calls.create_async(
                    to=message.to, from_=self._twilio.sender or "", twiml=twiml,
                    status_callback=self._twilio.status_callback,
                )
        except Exception as error:  # noqa: BLE001
            raise classify(error) from error
        return ProviderResult(provider_id=str(created.sid))

    async def close(self) -> None:
        await self._twilio.close()
