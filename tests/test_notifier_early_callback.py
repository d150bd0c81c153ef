"""docs/reliability.md "Early status callbacks": Twilio can post a message's status before the
notifier has its answer to the send, so before the message's sid is recorded. Such a callback
is kept and applied when the sid is recorded, with the consequences it would have had (a
failure moves the family chase on). The loopback stub posts the signed callback through the
notifier's own webhook while the send is still waiting for its answer."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from notifier.models import early_status_callbacks
from sqlalchemy import func, select

from tests.stack import Stack, family_request, parent

FIRST, SECOND = "+447700900001", "+447700900002"
WAIT = dt.timedelta(minutes=15)  # NotifierSettings.delivery_receipt_wait_seconds default


def _by_phone(notifications: list[dict[str, Any]]) -> dict[Any, Any]:
    return {n["to"]: n["status"] for n in notifications if n["channel"] != "email"}


def _callback_before_the_answer(stack: Stack, *statuses: str, to: str = FIRST,
                                error_code: int | None = None) -> list[dict[str, Any]]:
    """Make the stub post `statuses` for the message to `to` before answering its send;
    returns what the notification log said about it at that moment."""
    seen: list[dict[str, Any]] = []

    async def post_callbacks(record: dict[str, Any]) -> None:
        if record["to"] != to:
            return
        [row] = [n for n in await stack.notifications() if n["to"] == to]
        seen.append(row)
        for status in statuses:
            response = await stack.status_callback(record["sid"], status, error_code=error_code)
            assert response.status_code == 204

    stack.twilio.before_answer = post_callbacks
    return seen


async def _early_rows(stack: Stack) -> int:
    async with stack.notifier.engine.connect() as conn:
        count = await conn.scalar(select(func.count()).select_from(early_status_callbacks))
    return int(count or 0)


async def test_text_delivered_before_twilio_answered_is_recorded_delivered(stack: Stack) -> None:
    seen = _callback_before_the_answer(stack, "delivered")
    await stack.publish_requests(family_request(stack.clock.now(), parent(1), parent(2)))
    await stack.sent(1)

    # The callback really came before the sid was recorded.
    assert [(row["status"], row["provider_id"]) for row in seen] == [("pending", None)]
    [first] = await stack.notifications()
    assert (first["status"], first["provider_id"]) == (
        "delivered", stack.twilio.messages[0]["sid"])
    assert await _early_rows(stack) == 0
    # The family was reached: nobody else is texted once the receipt wait is long over.
    stack.clock.advance(WAIT * 4)
    await stack.dispatch_due()
    assert [m["to"] for m in stack.twilio.messages] == [FIRST]


async def test_text_undelivered_before_twilio_answered_moves_on_to_the_next_contact(
    stack: Stack,
) -> None:
    seen = _callback_before_the_answer(stack, "undelivered", error_code=30003)
    await stack.publish_requests(family_request(stack.clock.now(), parent(1), parent(2)))

    # No receipt wait: the second contact is texted at once, as for a callback that came later.
    texts = await stack.twilio.wait_for_messages(2)
    await stack.sent(2)
    assert [row["provider_id"] for row in seen] == [None]
    assert [t["to"] for t in texts] == [FIRST, SECOND]
    assert _by_phone(await stack.notifications()) == {FIRST: "undelivered", SECOND: "sent"}
    assert await _early_rows(stack) == 0


async def test_early_receipts_out_of_order_still_end_delivered(stack: Stack) -> None:
    _callback_before_the_answer(stack, "delivered", "sent")
    await stack.publish_requests(family_request(stack.clock.now(), parent(1)))
    await stack.sent(1)
    assert _by_phone(await stack.notifications()) == {FIRST: "delivered"}


async def test_late_sent_receipt_does_not_undo_delivered(stack: Stack) -> None:
    await stack.publish_requests(family_request(stack.clock.now(), parent(1), parent(2)))
    (first,) = await stack.twilio.wait_for_messages(1)
    await stack.sent(1)
    assert (await stack.status_callback(first["sid"], "delivered")).status_code == 204
    before = await stack.notifications()

    assert (await stack.status_callback(first["sid"], "sent")).status_code == 204
    assert await stack.notifications() == before
    assert _by_phone(before) == {FIRST: "delivered"}
    # Nor is a late receipt for a known sid kept as an early one.
    assert await _early_rows(stack) == 0


async def test_callbacks_for_a_sid_never_recorded_are_kept_for_a_day(stack: Stack) -> None:
    unknown = "SM" + uuid.uuid4().hex
    assert (await stack.status_callback(unknown, "delivered")).status_code == 204
    assert (await stack.status_callback(unknown, "delivered")).status_code == 204  # a replay
    assert await _early_rows(stack) == 1

    stack.clock.advance(dt.timedelta(days=1, seconds=1))
    assert (await stack.status_callback("SM" + uuid.uuid4().hex, "sent")).status_code == 204
    assert await _early_rows(stack) == 2  # kept until the housekeeping runs
    await stack.notifier.housekeeping.run_once()
    assert await _early_rows(stack) == 1  # the day-old one went; the new one is kept
    assert await stack.notifications() == []
