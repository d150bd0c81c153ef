"""A message that always makes the handler fail is dead-lettered after the delivery limit and
does not stall the queue (issue: poison messages)."""

from __future__ import annotations

from typing import Any

import pytest
from broker_messages import topology

from tests.factories import contact, mark, pupil, school
from tests.stack import Stack


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_event_that_always_crashes_the_handler_is_dead_lettered_and_others_flow(
    stack: Stack,
) -> None:
    await stack.put_school(school([
        pupil("P1", contacts=[contact(1, phone="+447700900001", email=None)]),
        pupil("P2", contacts=[contact(1, phone="+447700900002", email=None)]),
        pupil("P3", contacts=[contact(1, phone="+447700900003", email=None)]),
    ]))
    real_apply = stack.triage.ingestor.apply
    attempts: list[str] = []

    async def apply_that_chokes_on_p2(events: list[Any]) -> Any:
        if any(event.pupil_id == "P2" for event in events):
            attempts.append("P2")
            raise RuntimeError("a bug that this event always triggers")
        return await real_apply(events)

    stack.triage.ingestor.apply = apply_that_chokes_on_p2  # type: ignore[method-assign]
    poison = mark("P2", "N")
    await stack.publish(mark("P1", "N"), poison, mark("P3", "N"))

    dead = await stack.dead_letters(expected=1, timeout=30)
    reason = (dead[0].headers or {}).get(topology.REJECTION_REASON_HEADER)
    assert b'"P2"' in dead[0].body and "handler failed" in str(reason)
    assert attempts.count("P2") >= topology.DELIVERY_LIMIT - 1
    stack.at(9, 30)
    await stack.run_due()
    texts = await stack.twilio.wait_for_messages(2)
    assert sorted(t["to"] for t in texts) == ["+447700900001", "+447700900003"]
