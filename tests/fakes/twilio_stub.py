"""Loopback Twilio REST API (Messages + Calls) for integration tests.

Why at the HTTP layer: the app uses the real ``twilio`` client, so this exercises its
real form encoding, basic auth, JSON parsing and ``TwilioRestException`` mapping.

Building the real client against the stub with NO library retries (twilio 9.13)::

    http = AsyncTwilioHttpClient()  # leave max_retries unset (None)
    client = Client(stub.account_sid, stub.auth_token, http_client=http)
    client.api.base_url = stub.base_url
    ...
    await http.close()

``AsyncTwilioHttpClient`` wraps its session in ``aiohttp_retry.RetryClient`` only when
``max_retries is not None`` (``ExponentialRetry(attempts=max_retries)``: retries every 5xx
and connection error). Left at ``None``, each ``create_async`` is exactly one HTTP request,
so the app's retry layer is the only one. Never pass ``max_retries=0``: aiohttp_retry then
retries 5xx without limit (verified against this stub).

Also verified on twilio 9.13: ``AsyncTwilioHttpClient(timeout=...)`` is ignored by
``request()`` (it forwards the per-call ``None``, which aiohttp reads as "no timeout"), so
bound calls with ``asyncio.timeout()``; the constructor opens an ``aiohttp.ClientSession``,
so build it inside a running loop and ``await http.close()``; an error body carrying
type/title/status/code becomes ``TwilioServiceException``, so the stub sends the legacy
shape and the client raises ``TwilioRestException``.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import random
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Self

import httpx
from aiohttp import web
from twilio.request_validator import RequestValidator

API = "/2010-04-01/Accounts/{account}"
_Fault = tuple[int, int, str]  # HTTP status, Twilio error code, message
# Real Twilio codes for statuses the stub is likely to be asked to fake.
_DEFAULT_CODES = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}
# What real Twilio refuses, so app bugs surface here: (any-of params, code, message).
# Codes are Twilio's, except 21205 ("invalid Url") stands in for a missing call Url.
_REQUIRED = {
    "Messages": [("To", 21604, "A 'To' phone number is required."),
                 ("From|MessagingServiceSid", 21603, "A 'From' phone number is required."),
                 ("Body|MediaUrl|ContentSid", 21602, "Message body is required.")],
    "Calls": [("To", 21201, "No 'To' number is specified"),
              ("From", 21213, "No 'From' number is specified"),
              ("Url|Twiml|ApplicationSid", 21205, "Url, Twiml or ApplicationSid required")],
}


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _error(status: int, code: int, message: str) -> web.Response:
    """Legacy Twilio error body, the shape twilio maps to ``TwilioRestException``."""
    body = {"code": code, "message": message, "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}"}
    return web.json_response(body, status=status)


class TwilioStub:
    """In-process Twilio API on 127.0.0.1 with scripted faults and webhook playback."""

    def __init__(self, account_sid: str | None = None, auth_token: str = "test-auth-token",
                 *, latency: float = 0.0, jitter: float = 0.0, seed: int = 0):
        """`latency` +/- `jitter` seconds (uniform, from `seed`): how long each accepted
        message or call waits before its answer, as real Twilio's 100-300 ms do. A sender
        reaches a per-second rate against it only by sending concurrently."""
        if jitter > latency:
            raise ValueError("jitter must not exceed latency")
        self.latency = latency
        self.jitter = jitter
        self._latencies = random.Random(seed)
        # sid -> how long its answer was held for `latency`, so a test can check the draw.
        self.answer_delays: dict[str, float] = {}
        self.account_sid = account_sid or _sid("AC")
        self.auth_token = auth_token
        self.base_url = ""
        self.messages: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []
        # sid -> when the stub accepted it (time.time()), for latency measurements (bench/).
        self.arrivals: dict[str, float] = {}
        # Every accepted message as Twilio would return it, for the list endpoint.
        self._message_resources: list[dict[str, Any]] = []
        # Called after a message is accepted and before the answer goes back: a test can
        # crash the sender exactly where the answer would be lost.
        self.on_accepted: Callable[[dict[str, Any]], None] | None = None
        # Awaited at the same point: real Twilio may post a status callback before the sender
        # has its answer (and so before the sender has recorded the message's sid).
        self.before_answer: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self._faults: deque[_Fault] = deque()
        self._delays: deque[float] = deque()
        self._late_answers: deque[float] = deque()
        self._rejected: dict[str, _Fault] = {}
        self._changed = asyncio.Condition()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> TwilioStub:
        self._closing.clear()
        app = web.Application()
        app.router.add_post(API + "/{kind:(?:Messages|Calls)}.json", self._handle)
        app.router.add_get(API + "/Messages.json", self._list_messages)
        # Short shutdown: delayed handlers are woken by _closing, nothing else lingers.
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- scripting -------------------------------------------------------------------

    def fail_next(self, count: int, status: int = 500, code: int | None = None,
                  message: str = "Simulated Twilio failure") -> None:
        """Answer the next ``count`` requests (any resource, before auth) with an error."""
        code = _DEFAULT_CODES.get(status, status) if code is None else code
        self._faults.extend([(status, code, message)] * count)

    def reject_number(self, phone: str, status: int = 400, code: int = 21610,
                      message: str = "Attempt to send to unsubscribed recipient") -> None:
        """Fail every message/call to ``phone`` permanently (default: STOP-ed recipient)."""
        self._rejected[phone] = (status, code, message)

    def delay_next(self, count: int, seconds: float) -> None:
        """Hold the next ``count`` responses. Like real Twilio, a request the client
        abandoned on timeout is still processed and recorded (the duplicate-send risk)."""
        self._delays.extend([seconds] * count)

    def lose_answers(self, count: int, seconds: float) -> None:
        """Accept the next ``count`` messages, then hold the answer ``seconds``: the client
        times out although Twilio has the message (the ambiguous failure)."""
        self._late_answers.extend([seconds] * count)

    def reset(self) -> None:
        """Forget recorded traffic and scripted faults, keep the server running."""
        for store in (self.messages, self.calls, self.attempts, self.arrivals, self._faults,
                      self._delays, self._message_resources, self.answer_delays):
            store.clear()
        self._rejected.clear()

    # ---- waiting ---------------------------------------------------------------------

    async def wait_for_messages(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        return await self._wait(self.messages, n, timeout, "messages")

    async def wait_for_calls(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        return await self._wait(self.calls, n, timeout, "calls")

    async def _wait(self, store: list[dict[str, Any]], n: int, timeout: float,
                    what: str) -> list[dict[str, Any]]:
        """Event-driven wait: handlers notify the condition, so no sleep-polling."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: len(store) >= n)
        except TimeoutError:
            raise AssertionError(
                f"TwilioStub: expected >= {n} {what} within {timeout}s, got {len(store)}: "
                f"{store!r}; attempts={self.attempts!r}") from None
        return store

    # ---- HTTP handlers -----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        params = {k: str(v) for k, v in (await request.post()).items()}
        attempt: dict[str, Any] = {"kind": kind, "params": params, "status": None, "sid": None}
        self.attempts.append(attempt)
        if self._delays:
            try:  # stop() wakes the wait so shutdown is never held up by a delay
                await asyncio.wait_for(self._closing.wait(), self._delays.popleft())
            except TimeoutError:
                pass
        response, record = self._decide(request, kind, params)
        attempt["status"] = response.status
        if record is not None:
            attempt["sid"] = record["sid"]
            self.arrivals[record["sid"]] = time.time()
            if kind == "Messages":
                self._message_resources.append(record)
            async with self._changed:
                (self.messages if kind == "Messages" else self.calls).append(
                    _summary(kind, record, params))
                self._changed.notify_all()
            if self.on_accepted is not None:
                self.on_accepted(record)
            if self.before_answer is not None:
                await self.before_answer(record)
            if self._late_answers:
                await self._hold(self._late_answers.popleft())
            elif self.latency:
                delay = self._latencies.uniform(self.latency - self.jitter,
                                                self.latency + self.jitter)
                self.answer_delays[record["sid"]] = delay
                await self._hold(delay)
        return response

    async def _hold(self, seconds: float) -> None:
        """Hold an answer; stop() wakes the wait so shutdown is never held up."""
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            pass

    def _decide(self, request: web.Request, kind: str,
                params: dict[str, str]) -> tuple[web.Response, dict[str, Any] | None]:
        if self._closing.is_set():
            return _error(503, 20503, "Service Unavailable"), None
        if self._faults:
            return _error(*self._faults.popleft()), None
        if not self._authorised(request):
            response = _error(401, 20003, "Authenticate")
            response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            return response, None
        if request.match_info["account"] != self.account_sid:
            return _error(404, 20404, "The requested resource was not found"), None
        missing = ((400, code, message) for names, code, message in _REQUIRED[kind]
                   if not any(params.get(name) for name in names.split("|")))
        fault = self._rejected.get(params.get("To", "")) or next(missing, None)
        if fault is not None:
            return _error(*fault), None
        record = self._resource(kind, params)
        return web.json_response(record, status=201), record

    async def _list_messages(self, request: web.Request) -> web.Response:
        """`GET Messages.json?To=…`: one page with every matching message (newest first),
        as a sender reconciling after a crash would ask."""
        if not self._authorised(request):
            return _error(401, 20003, "Authenticate")
        to = request.query.get("To")
        found = [r for r in reversed(self._message_resources) if to is None or r["to"] == to]
        uri = request.path_qs
        return web.json_response({
            "messages": found, "page": 0, "page_size": max(len(found), 50), "start": 0,
            "end": max(len(found) - 1, 0), "uri": uri, "first_page_uri": uri,
            "next_page_uri": None, "previous_page_uri": None,
        })

    def _authorised(self, request: web.Request) -> bool:
        """Basic auth by hand: aiohttp 3.14 deprecates ``BasicAuth``."""
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except ValueError:
            return False
        expected = f"{self.account_sid}:{self.auth_token}".encode()
        return scheme.lower() == "basic" and hmac.compare_digest(decoded, expected)

    def _resource(self, kind: str, params: dict[str, str]) -> dict[str, Any]:
        """Twilio-shaped JSON; enough fields for MessageInstance/CallInstance."""
        sid = _sid("SM" if kind == "Messages" else "CA")
        now = format_datetime(datetime.now(UTC))
        uri = f"{API.format(account=self.account_sid)}/{kind}/{sid}"
        common = {"sid": sid, "account_sid": self.account_sid, "api_version": "2010-04-01",
                  "to": params["To"], "from": params.get("From"), "status": "queued",
                  "direction": "outbound-api", "date_created": now, "date_updated": now,
                  "price": None, "price_unit": "USD", "uri": uri + ".json"}
        if kind == "Messages":
            return {**common, **dict.fromkeys(("date_sent", "error_code", "error_message")),
                    "body": params.get("Body", ""), "num_segments": "1", "num_media": "0",
                    "messaging_service_sid": params.get("MessagingServiceSid"),
                    "subresource_uris": {"media": uri + "/Media.json"}}
        unknown = ("parent_call_sid", "phone_number_sid", "start_time", "end_time", "duration",
                   "answered_by", "caller_name", "forwarded_from", "group_sid", "trunk_sid")
        return {**common, **dict.fromkeys(unknown), "to_formatted": params["To"],
                "from_formatted": params.get("From"), "queue_time": "0",
                "subresource_uris": {"events": uri + "/Events.json"}}

    # ---- webhook playback --------------------------------------------------------------

    async def send_status_callback(self, sid: str, status: str, url: str | None = None,
                                   extra: dict[str, str] | None = None, *,
                                   error_code: int | None = None) -> httpx.Response:
        """POST a signed status callback for a recorded message (SM...) or call (CA...)."""
        record = next((r for r in self.messages + self.calls if r["sid"] == sid), None)
        target = url or (record or {}).get("status_callback")
        if not target:
            raise AssertionError(f"TwilioStub: no status_callback known for {sid}")
        kind = "Call" if sid.startswith("CA") else "Message"
        params = {f"{kind}Sid": sid, f"{kind}Status": status, "AccountSid": self.account_sid,
                  "ApiVersion": "2010-04-01"}
        if kind == "Message":
            params.update({"SmsSid": sid, "SmsStatus": status})
        if record is not None:
            params.update({"To": record["to"], "From": record["from_"] or ""})
        params.update({"ErrorCode": str(error_code)} if error_code is not None else {})
        return await self._post_signed(target, {**params, **(extra or {})}, None)

    async def send_inbound(self, url: str, from_: str, to: str, body: str,
                           signature: str | None = None) -> httpx.Response:
        """POST an inbound-SMS webhook; pass ``signature`` (e.g. "bad") to forge one."""
        sid = _sid("SM")
        params = {"MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid,
                  "AccountSid": self.account_sid, "From": from_, "To": to, "Body": body,
                  "NumMedia": "0", "NumSegments": "1", "SmsStatus": "received",
                  "ApiVersion": "2010-04-01"}
        return await self._post_signed(url, params, signature)

    async def _post_signed(self, url: str, params: dict[str, str],
                           signature: str | None) -> httpx.Response:
        """Sign as Twilio does: HMAC-SHA1 over the full URL + sorted form params."""
        if signature is None:
            signature = RequestValidator(self.auth_token).compute_signature(url, params)
        headers = {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"}
        async with httpx.AsyncClient(timeout=10.0) as client:
            return await client.post(url, data=params, headers=headers)


def _summary(kind: str, record: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    """The small, stable dict tests assert on (``from_`` mirrors the twilio kwarg)."""
    base = {"sid": record["sid"], "to": params.get("To"), "from_": params.get("From"),
            "status_callback": params.get("StatusCallback")}
    if kind == "Messages":
        return {**base, "body": params.get("Body"),
                "messaging_service_sid": params.get("MessagingServiceSid")}
    return {**base, "twiml": params.get("Twiml")}
