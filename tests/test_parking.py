"""Contract §2 and §3: events for pupils the roster does not name yet are parked, not lost; a
pupil who leaves (by a `pupil.removed` event or by missing from an upload) is not contacted."""

from __future__ import annotations

from sqlalchemy import select
from triage.models import decisions, marks, parked_events, pupils, scheduled_actions

from tests.factories import contact, mark, pupil, removal, school
from tests.stack import Stack

FIRST_DAY_CONTACT = "first_day_contact"  # the rule's id in docs/rules.md "The rules"


async def _actions(stack: Stack) -> dict[str, tuple[str, str]]:
    """Each pupil's first-day contact: (status, reason)."""
    async with stack.triage.engine.connect() as conn:
        rows = await conn.execute(
            select(scheduled_actions.c.pupil_id, scheduled_actions.c.status,
                   scheduled_actions.c.reason)
            .where(scheduled_actions.c.rule == FIRST_DAY_CONTACT))
        return {pupil_id: (status, reason) for pupil_id, status, reason in rows}


async def _parked(stack: Stack) -> list[tuple[str, str]]:
    async with stack.triage.engine.connect() as conn:
        rows = await conn.execute(select(parked_events.c.pupil_id, parked_events.c.event_id))
        return [(pupil_id, event_id) for pupil_id, event_id in rows]


async def test_mark_for_a_pupil_not_yet_on_the_roster_waits_for_the_roster(stack: Stack) -> None:
    """MIS exports and roster syncs race: the mark arrives before the new pupil does."""
    sally = pupil("P1", "Sally", contacts=[contact(1, phone="+447700900001", email=None)])
    newcomer = pupil("P9", "Nia", contacts=[contact(1, phone="+447700900009", email=None)])
    await stack.put_school(school([sally]))
    early = mark("P9", "N")
    await stack.publish(early)
    await stack.processed()

    assert await _parked(stack) == [("P9", early["event_id"])]
    assert await _actions(stack) == {}, "no contact is decided for a pupil we do not know"

    response = await stack.put_school(school([sally, newcomer]))
    assert response.status_code == 200, response.text
    assert response.json()["unparked"] == 1
    assert await _parked(stack) == []
    assert (await _actions(stack))["P9"][0] == "pending"

    stack.at(9, 30)
    await stack.run_due()
    texts = await stack.twilio.wait_for_messages(1)
    assert [t["to"] for t in texts] == ["+447700900009"]
    assert "Nia" in texts[0]["body"]


async def test_upload_that_still_omits_the_pupil_leaves_the_mark_parked(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1")]))
    await stack.publish(mark("P9", "N"))
    await stack.processed()
    response = await stack.put_school(school([pupil("P1"), pupil("P2", "Tom")]))
    assert response.json()["unparked"] == 0
    assert [pupil_id for pupil_id, _ in await _parked(stack)] == ["P9"]


async def test_pupil_removed_from_the_register_cancels_the_first_day_contact(stack: Stack) -> None:
    await stack.put_school(school([pupil("P1", contacts=[contact(1, email=None)])]))
    await stack.publish(mark("P1", "N"))
    await stack.processed()
    assert (await _actions(stack))["P1"][0] == "pending"

    await stack.publish(removal("P1"))
    await stack.processed()

    assert await _actions(stack) == {"P1": ("cancelled", "pupil removed from the register")}
    async with stack.triage.engine.connect() as conn:
        logged = (await conn.execute(
            select(decisions.c.outcome, decisions.c.reason)
            .where(decisions.c.rule == FIRST_DAY_CONTACT).order_by(decisions.c.id))).all()
        on_roll = (await conn.execute(select(pupils.c.on_roll))).scalar_one()
    assert [row.outcome for row in logged] == ["scheduled", "cancelled"]
    assert logged[-1].reason == "pupil removed from the register"
    assert on_roll is False
    stack.at(9, 30)
    await stack.run_due()
    assert (await _actions(stack))["P1"][0] == "cancelled"
    assert stack.twilio.attempts == [], "the parent is not texted"


async def test_pupil_missing_from_a_later_upload_has_left_and_is_not_contacted(
    stack: Stack,
) -> None:
    sally = pupil("P1", "Sally", contacts=[contact(1, phone="+447700900001", email=None)])
    tom = pupil("P2", "Tom", contacts=[contact(1, phone="+447700900002", email=None)])
    await stack.put_school(school([sally, tom]))
    await stack.publish(mark("P1", "N"), mark("P2", "N"))
    await stack.processed()

    response = await stack.put_school(school([tom]))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "urn": "123456", "pupils": 1, "added": 0, "left": 1, "unparked": 0, "no_usable_contact": [],
        "joined": [], "leavers": [{"id": "P1", "given_name": "Sally", "family_name": "Smith"}],
    }
    async with stack.triage.engine.connect() as conn:
        roll = dict((await conn.execute(select(pupils.c.pupil_id, pupils.c.on_roll))).all())
        kept = (await conn.execute(select(marks.c.pupil_id))).scalars().all()
    assert roll == {"P1": False, "P2": True}
    assert sorted(kept) == ["P1", "P2"], "a leaver's history is kept"

    stack.at(9, 30)
    await stack.run_due()
    texts = await stack.twilio.wait_for_messages(1)
    assert [t["to"] for t in texts] == ["+447700900002"]
    actions = await _actions(stack)
    assert actions["P1"] == ("cancelled", "pupil is no longer on roll")
    assert actions["P2"][0] == "requested"
    assert len(stack.twilio.attempts) == 1
