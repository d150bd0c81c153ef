"""SMS and voice through the official twilio library's async client."""

from __future__ import annotations

import asyncio
from xml.sax.saxutils import escape

from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from notifier.providers import OutgoingMessage, ProviderResult
from notifier.providers.errors import classify

# <Say> language and voice per template language: Welsh needs a Polly voice (Twilio's basic
# voices speak no Welsh). Anything else is read as British English.
SAY_VOICES = {"en": ("en-GB", "Polly.Amy"), "cy": ("cy-GB", "Polly.Gwyneth")}


def say_twiml(body: str, language: str) -> str:
    """Inline TwiML reading the message twice, with a pause, in the contact's language."""
    lang, voice = SAY_VOICES.get(language, SAY_VOICES["en"])
    say = f'<Say language="{lang}" voice="{voice}">{escape(body)}</Say>'
    return f'<Response>{say}<Pause length="1"/>{say}</Response>'


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
        except Exception as error:
            raise classify(error) from error
        return ProviderResult(provider_id=str(created.sid))

    async def find_sent(self, message: OutgoingMessage) -> ProviderResult | None:
        """Twilio has no idempotency key for Messages: after a crash, look for a message with
        this body among the recent ones to this number."""
        try:
            async with asyncio.timeout(self._twilio.timeout):
                recent = await self._twilio.client.messages.list_async(to=message.to, limit=50)
        except Exception as error:
            raise classify(error) from error
        for sent in recent:
            if sent.body == message.body and sent.sid:
                return ProviderResult(provider_id=str(sent.sid))
        return None

    async def close(self) -> None:
        await self._twilio.close()


class TwilioVoice:
    def __init__(self, twilio: TwilioClient) -> None:
        self._twilio = twilio

    async def send(self, message: OutgoingMessage) -> ProviderResult:
        twiml = say_twiml(message.body, message.language)
        try:
            async with asyncio.timeout(self._twilio.timeout):
                created = await self._twilio.client.calls.create_async(
                    to=message.to, from_=self._twilio.sender or "", twiml=twiml,
                    status_callback=self._twilio.status_callback,
                )
        except Exception as error:
            raise classify(error) from error
        return ProviderResult(provider_id=str(created.sid))

    async def find_sent(self, message: OutgoingMessage) -> ProviderResult | None:
        return None  # a call cannot be matched to its TwiML afterwards: call again

    async def close(self) -> None:
        await self._twilio.close()
