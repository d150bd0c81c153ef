"""Issue 16: "every metric that exists counts; a test checks each one moves". One morning runs
through the real triage and notifier (broker, database, the Twilio stub), touching each thing a
metric counts, and every counter each service exports on GET /metrics (docs/contract.md §6) has
moved. The list is read from the services themselves, so a metric added later is held to the
same test without being named here."""

from __future__ import annotations

import datetime as dt

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import LONDON, contact, mark, pupil, school
from tests.stack import Stack


async def _counters(api: httpx.AsyncClient, prefix: str) -> dict[str, float]:
    """Each counter family's total over its labels, from the Prometheus text format."""
    response = await api.get("/metrics")
    assert response.status_code == 200
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        if family.type != "counter" or not family.name.startswith(prefix):
            continue
        totals[family.name] = sum(sample.value for sample in family.samples
                                  if sample.name.endswith("_total"))
    return totals


async def test_every_metric_of_each_service_moves_in_a_morning(stack: Stack) -> None:
    await stack.put_school(school([
        pupil("P1", "Sally", contacts=[contact(1, phone="+447700900001", email=None)]),
    ]))
    before = {**await _counters(stack.triage_api, "triage_"),
              **await _counters(stack.notifier_api, "notifier_")}
    assert set(before) == {
        "triage_events", "triage_events_rejected", "triage_contacts_requested",
        "notifier_requests", "notifier_requests_rejected", "notifier_notifications",
        "notifier_provider_errors", "notifier_status_callbacks",
    }, "a metric was added or renamed: this scenario must make it move"
    assert not any(before.values())

    # An MIS sends a good mark and a message that is not an event (dead-lettered).
    recorded = dt.datetime(2026, 11, 23, 8, 52, tzinfo=LONDON)
    await stack.publish(mark("P1", "N", recorded=recorded), b"not json")
    await stack.processed()

    # 09:30: the first-day text is requested; Twilio fails once, the retry sends it.
    stack.twilio.fail_next(1, 500)
    stack.at(9, 30)
    await stack.run_due()
    await stack.handed_over()
    await stack.sent(1)
    [sms] = stack.twilio.messages
    assert (await stack.status_callback(sms["sid"], "delivered")).status_code == 204

    # A request the notifier cannot read is dead-lettered.
    await stack.publish_requests(b"{not json")
    await stack.handed_over()

    after = {**await _counters(stack.triage_api, "triage_"),
             **await _counters(stack.notifier_api, "notifier_")}
    unmoved = sorted(name for name, value in after.items() if value <= before[name])
    assert not unmoved, f"metrics that never moved: {unmoved}"
