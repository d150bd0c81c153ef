"""docs/contract.md §6: the metrics an operator watches count what they say they count."""

from __future__ import annotations

import datetime as dt
import re

from tests.factories import LONDON, contact, mark, pupil, school
from tests.stack import Stack


async def _metric(stack: Stack, name: str) -> float:
    text = (await stack.triage_api.get("/metrics")).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} is not exported"
    return float(found.group(1))


async def test_contacts_requested_counts_requests_the_broker_took_not_cancellations(
        stack: Stack) -> None:
    await stack.put_school(school([
        pupil("P1", "Sally", contacts=[contact(1, phone="+447700900001", email=None)]),
        pupil("P2", "Tom", contacts=[contact(1, phone="+447700900002", email=None)]),
    ]))
    first = dt.datetime(2026, 11, 23, 8, 52, tzinfo=LONDON)
    await stack.publish(mark("P1", "N", recorded=first), mark("P2", "N", recorded=first))
    await stack.processed()
    assert await _metric(stack, "triage_contacts_requested_total") == 0

    stack.at(9, 30)
    assert await stack.run_due() == 2
    assert await _metric(stack, "triage_contacts_requested_total") == 2

    # The office amends P1 to illness: triage cancels the request it sent, and that is no
    # new contact request.
    recoded = dt.datetime(2026, 11, 23, 9, 40, tzinfo=LONDON)
    stack.clock.set(recoded)
    await stack.publish(mark("P1", "I", recorded=recoded))
    await stack.processed()
    await stack.handed_over()
    assert stack.triage.relay is not None and stack.triage.relay.published == 3
    assert await _metric(stack, "triage_contacts_requested_total") == 2
