"""Prove the test fakes against the real client libraries the app uses.

Why: every integration test trusts these fakes; if the stub's JSON, auth or error
shape drifted from what twilio/aiosmtplib expect, those tests would pass for the
wrong reason. The twilio client here is built exactly as the app must build it:
``AsyncTwilioHttpClient()`` with ``max_retries`` unset, i.e. no library retries.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.fakes import SmtpSink, TwilioStub

SCHOOL = "+447700900000"
PARENT = "+447700900123"


@asynccontextmanager
async def twilio_env(token: str | None = None) -> AsyncIterator[tuple[TwilioStub, Client]]:
    """Stub + real client, built inside the test so both share the test's event loop
    whatever loop scopes pytest-asyncio is configured with."""
    async with TwilioStub() as stub:
        http = AsyncTwilioHttpClient()  # max_retries=None: exactly one request per call
        client = Client(stub.account_sid, token or stub.auth_token, http_client=http)
        client.api.base_url = stub.base_url
        try:
            yield stub, client
        finally:
            await http.close()


@asynccontextmanager
async def receiver(auth_token: str) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """Tiny webhook endpoint that checks X-Twilio-Signature like the app must."""
    seen: list[dict[str, Any]] = []
    validator = RequestValidator(auth_token)

    async def hook(request: web.Request) -> web.Response:
        params = {k: str(v) for k, v in (await request.post()).items()}
        valid = validator.validate(str(request.url), params,
                                   request.headers.get("X-Twilio-Signature", ""))
        seen.append({"path": request.path_qs, "params": params, "valid": valid})
        return web.Response(status=204 if valid else 403)

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


def _email(subject: str = "Absence today") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "office@school.test"
    msg["To"] = "parent@home.test"
    msg["Subject"] = subject
    msg.set_content("Your child was marked absent this morning.")
    return msg


# ---- Twilio stub ----------------------------------------------------------------------


async def test_sms_and_call_are_recorded() -> None:
    async with twilio_env() as (stub, twilio):
        sms = await twilio.messages.create_async(
            to=PARENT, from_=SCHOOL, body="Absent today",
            status_callback="http://app.test/sms-status")
        call = await twilio.calls.create_async(
            to=PARENT, from_=SCHOOL, twiml="<Response/>",
            status_callback="http://app.test/call-status")

        assert sms.sid.startswith("SM") and len(sms.sid) == 34 and sms.status == "queued"
        assert (sms.to, sms.from_, sms.body) == (PARENT, SCHOOL, "Absent today")
        assert sms.date_created is not None
        assert await stub.wait_for_messages(1) == [{
            "sid": sms.sid, "to": PARENT, "from_": SCHOOL, "body": "Absent today",
            "status_callback": "http://app.test/sms-status", "messaging_service_sid": None}]
        assert call.sid.startswith("CA") and call.status == "queued"
        assert await stub.wait_for_calls(1) == [{
            "sid": call.sid, "to": PARENT, "from_": SCHOOL, "twiml": "<Response/>",
            "status_callback": "http://app.test/call-status"}]


async def test_wrong_token_is_401() -> None:
    async with twilio_env(token="not-the-token") as (stub, twilio):
        with pytest.raises(TwilioRestException) as err:
            await twilio.messages.create_async(to=PARENT, from_=SCHOOL, body="x")
        assert (err.value.status, err.value.code) == (401, 20003)
        assert stub.messages == [] and [a["status"] for a in stub.attempts] == [401]


async def test_fail_next_then_success_one_request_per_call() -> None:
    async with twilio_env() as (stub, twilio):
        stub.fail_next(2, status=500)
        for _ in range(2):
            with pytest.raises(TwilioRestException) as err:
                await twilio.messages.create_async(to=PARENT, from_=SCHOOL, body="x")
            assert err.value.status == 500 and "Simulated Twilio failure" in err.value.msg
        sms = await twilio.messages.create_async(to=PARENT, from_=SCHOOL, body="x")

        # Three calls, three HTTP requests: the twilio client added no retries of its own.
        assert [a["status"] for a in stub.attempts] == [500, 500, 201]
        assert [m["sid"] for m in stub.messages] == [sms.sid]


async def test_rejected_number_fails_permanently() -> None:
    async with twilio_env() as (stub, twilio):
        stub.reject_number(PARENT)
        with pytest.raises(TwilioRestException) as err:
            await twilio.messages.create_async(to=PARENT, from_=SCHOOL, body="x")
        assert (err.value.status, err.value.code) == (400, 21610)
        with pytest.raises(TwilioRestException) as err:
            await twilio.calls.create_async(to=PARENT, from_=SCHOOL, twiml="<Response/>")
        assert err.value.code == 21610
        other = await twilio.messages.create_async(to="+447700900999", from_=SCHOOL, body="x")
        assert [m["sid"] for m in stub.messages] == [other.sid] and stub.calls == []


async def test_delayed_request_abandoned_by_client_is_still_sent() -> None:
    async with twilio_env() as (stub, twilio):
        stub.delay_next(1, 0.3)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await twilio.messages.create_async(to=PARENT, from_=SCHOOL, body="x")
        assert stub.messages == []
        assert (await stub.wait_for_messages(1))[0]["to"] == PARENT


async def test_latency_holds_each_answer_a_seeded_time_after_the_message_is_recorded() -> None:
    async with TwilioStub(latency=0.2, jitter=0.05, seed=7) as stub:
        http = AsyncTwilioHttpClient()
        twilio = Client(stub.account_sid, stub.auth_token, http_client=http)
        twilio.api.base_url = stub.base_url
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            answers = [asyncio.ensure_future(twilio.messages.create_async(
                to=f"+44770090{n:04d}", from_=SCHOOL, body="x")) for n in range(3)]
            # Recorded on arrival, answered later: a sender counts what reaches Twilio.
            await stub.wait_for_messages(3)
            assert not any(answer.done() for answer in answers)
            sids = {answer.sid for answer in await asyncio.gather(*answers)}
            held = loop.time() - started
        finally:
            await http.close()
    assert set(stub.answer_delays) == sids
    assert all(0.15 <= delay <= 0.25 for delay in stub.answer_delays.values())
    assert held >= min(stub.answer_delays.values())
    # The same seed draws the same delays (the benchmark's runs are repeatable).
    again = random.Random(7)
    assert list(stub.answer_delays.values()) == [
        again.uniform(0.2 - 0.05, 0.2 + 0.05) for _ in range(3)]


async def test_wait_times_out_with_assertion() -> None:
    async with TwilioStub() as stub:
        with pytest.raises(AssertionError, match="expected >= 1 calls"):
            await stub.wait_for_calls(1, timeout=0.05)


async def test_status_callback_is_signed_like_twilio() -> None:
    async with twilio_env() as (stub, twilio), receiver(stub.auth_token) as (url, seen):
        sms = await twilio.messages.create_async(to=PARENT, from_=SCHOOL, body="x",
                                                 status_callback=f"{url}/status?n=1")
        response = await stub.send_status_callback(sms.sid, "undelivered", error_code=30003)

        assert response.status_code == 204
        assert seen[0]["valid"] and seen[0]["path"] == "/status?n=1"
        wanted = ("MessageSid", "MessageStatus", "To", "From", "AccountSid", "ErrorCode")
        assert {k: seen[0]["params"][k] for k in wanted} == {
            "MessageSid": sms.sid, "MessageStatus": "undelivered", "To": PARENT,
            "From": SCHOOL, "AccountSid": stub.account_sid, "ErrorCode": "30003"}


async def test_inbound_sms_signature_and_forgery() -> None:
    async with TwilioStub() as stub, receiver(stub.auth_token) as (url, seen):
        good = await stub.send_inbound(f"{url}/inbound", PARENT, SCHOOL, "STOP")
        forged = await stub.send_inbound(f"{url}/inbound", PARENT, SCHOOL, "STOP",
                                         signature="bad")

        assert (good.status_code, forged.status_code) == (204, 403)
        assert [s["valid"] for s in seen] == [True, False]
        assert seen[0]["params"]["Body"] == "STOP" and seen[0]["params"]["NumMedia"] == "0"


# ---- SMTP sink ------------------------------------------------------------------------


async def test_smtp_delivery_is_parsed() -> None:
    async with SmtpSink() as sink:
        await aiosmtplib.send(_email(), hostname=sink.host, port=sink.port,
                              recipients=["parent@home.test", "bcc@school.test"])
        [msg] = await sink.wait_for(1)
        assert (msg["Subject"], msg["To"]) == ("Absence today", "parent@home.test")
        assert msg.get_content().strip() == "Your child was marked absent this morning."
        assert sink.envelopes[0].rcpt_tos == ("parent@home.test", "bcc@school.test")


async def test_smtp_fail_next_at_data() -> None:
    async with SmtpSink() as sink:
        sink.fail_next(1, code=451, text="4.3.0 try again")
        with pytest.raises(aiosmtplib.SMTPResponseException) as err:
            await aiosmtplib.send(_email(), hostname=sink.host, port=sink.port)
        assert err.value.code == 451 and sink.messages == []
        await aiosmtplib.send(_email("Retry"), hostname=sink.host, port=sink.port)
        assert [m["Subject"] for m in await sink.wait_for(1)] == ["Retry"]


async def test_smtp_fail_next_at_rcpt() -> None:
    async with SmtpSink() as sink:
        sink.fail_next(1, code=550, text="5.1.1 no such user", stage="RCPT")
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as err:
            await aiosmtplib.send(_email(), hostname=sink.host, port=sink.port)
        assert err.value.recipients[0].code == 550 and sink.messages == []


async def test_smtp_refused_then_accepted_on_same_port() -> None:
    async with SmtpSink() as sink:
        port = sink.port
        await sink.refuse_connections()
        with pytest.raises(aiosmtplib.SMTPConnectError) as err:
            await aiosmtplib.send(_email(), hostname=sink.host, port=port, timeout=2)
        assert isinstance(err.value, ConnectionError)
        await sink.accept_connections()
        assert sink.port == port
        await aiosmtplib.send(_email(), hostname=sink.host, port=port)
        assert len(await sink.wait_for(1)) == 1
