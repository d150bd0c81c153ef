"""docs/contract.md §3: the roster as people use it — read back, replaced whole with who joins
and who leaves said out loud (and a partial export refused), one pupil changed at a time —
with phone numbers in the formats schools write them, Reception and nursery year groups, bank
holidays that are not school days, and no text message to a landline."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from triage.models import decisions, pupils

from tests.factories import LONDON, URN, contact, mark, pupil, school
from tests.scenarios import timeline
from tests.stack import Stack

SCHOOL = f"/api/v1/schools/{URN}"


async def _on_roll(stack: Stack) -> dict[str, bool]:
    async with stack.triage.engine.connect() as conn:
        rows = await conn.execute(select(pupils.c.pupil_id, pupils.c.on_roll))
        return {pupil_id: bool(on_roll) for pupil_id, on_roll in rows}


def _who(pupil_id: str, given_name: str) -> dict[str, str]:
    return {"id": pupil_id, "given_name": given_name, "family_name": "Smith"}


async def test_the_stored_document_reads_back_normalised_and_can_be_sent_again(
        stack: Stack) -> None:
    document = school([
        pupil("P2", "Tom", year_group="R", contacts=[contact(1, phone="07700 900123")]),
        pupil("P1", "Sally", year_group="N1", contacts=[contact(1, phone="+44 7700 900124")]),
        pupil("P3", "Ada", year_group=6, contacts=[contact(1, phone="01632 960123")]),
    ])
    document["phone"] = "01235 764822"
    assert (await stack.put_school(document)).status_code == 200
    assert (await stack.triage_api.get("/api/v1/schools/654321")).status_code == 404

    stored = (await stack.triage_api.get(SCHOOL)).json()
    assert stored["phone"] == "+441235764822" and stored["country"] == "england"
    assert [(p["id"], p["year_group"], p["contacts"][0]["phone"]) for p in stored["pupils"]] == [
        ("P1", -2, "+447700900124"), ("P2", 0, "+447700900123"), ("P3", 6, "+441632960123")]
    again = await stack.put_school(stored)
    assert again.status_code == 200, again.text
    assert again.json()["joined"] == [] and again.json()["leavers"] == []


async def test_a_full_upload_says_who_joined_and_left_and_refuses_a_partial_export(
        stack: Stack) -> None:
    names = {"P1": "Sally", "P2": "Tom", "P3": "Ada", "P4": "Zac"}
    first = await stack.put_school(school([pupil(i, n) for i, n in names.items()]))
    assert first.json()["joined"] == [_who(i, n) for i, n in names.items()]

    # Two of four leave and one joins: half, not more than half, so it goes through.
    swapped = await stack.put_school(school([pupil("P1", "Sally"), pupil("P2", "Tom"),
                                             pupil("P5", "Eve", contacts=[])]))
    assert swapped.status_code == 200, swapped.text
    assert swapped.json() | {"urn": URN} == {
        "urn": URN, "pupils": 3, "added": 1, "left": 2, "unparked": 0,
        "joined": [_who("P5", "Eve")], "leavers": [_who("P3", "Ada"), _who("P4", "Zac")],
        "no_usable_contact": ["P5"]}

    # Two of three would leave: refused, naming them, and nothing changes.
    before = await _on_roll(stack)
    refused = await stack.put_school(school([pupil("P1", "Sally")]))
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert detail["leavers"] == [_who("P2", "Tom"), _who("P5", "Eve")]
    assert "2 of the 3 pupils" in detail["msg"] and "P2, P5" in detail["msg"]
    emptied = await stack.put_school(school([]))
    assert emptied.status_code == 409 and "allow_removals" in emptied.json()["detail"]["msg"]
    assert await _on_roll(stack) == before

    allowed = await stack.triage_api.put(SCHOOL, json=school([pupil("P1", "Sally")]),
                                         params={"allow_removals": "true"})
    assert allowed.status_code == 200 and allowed.json()["left"] == 2
    assert {i for i, on in (await _on_roll(stack)).items() if on} == {"P1"}


async def test_one_pupil_is_added_changed_and_taken_off_roll(stack: Stack) -> None:
    assert (await stack.put_school(school([pupil("P1", "Sally")]))).status_code == 200
    # A mark for a pupil the roster does not name yet waits for them.
    await stack.publish(mark("P2", "/"))
    await stack.processed()

    added = await stack.triage_api.put(f"{SCHOOL}/pupils/P2",
                                       json=pupil("P2", "Tom", contacts=[]))
    assert added.status_code == 200, added.text
    assert added.json() | {"pupil": None} == {"urn": URN, "pupil": None, "joined": True,
                                              "unparked": 1, "no_usable_contact": ["P2"]}

    changed = await stack.triage_api.patch(f"{SCHOOL}/pupils/P2", json={
        "year_group": "R", "contacts": [contact(1, phone="07700 900222")]})
    assert changed.status_code == 200, changed.text
    record = changed.json()["pupil"]
    assert (record["given_name"], record["year_group"]) == ("Tom", 0)
    assert record["contacts"][0]["phone"] == "+447700900222"
    assert changed.json()["no_usable_contact"] == []
    stored = (await stack.triage_api.get(SCHOOL)).json()["pupils"]
    assert [p["year_group"] for p in stored if p["id"] == "P2"] == [0]

    gone = await stack.triage_api.delete(f"{SCHOOL}/pupils/P2")
    assert gone.status_code == 200 and gone.json()["leavers"] == [_who("P2", "Tom")]
    assert (await _on_roll(stack))["P2"] is False
    assert (await stack.triage_api.delete(f"{SCHOOL}/pupils/P2")).status_code == 404
    assert (await stack.triage_api.patch(f"{SCHOOL}/pupils/P2", json={})).status_code == 404
    assert (await stack.triage_api.patch("/api/v1/schools/654321/pupils/P2",
                                         json={})).status_code == 404


async def test_problems_name_the_pupil_and_the_field_in_words(stack: Stack) -> None:
    assert (await stack.put_school(school([pupil("P1")]))).status_code == 200
    before = (await stack.triage_api.get(SCHOOL)).json()
    bad = school([pupil("P0001"), pupil("P0003", year_group="Q", contacts=[
        contact(1), contact(2, phone="0770 09", email="nobody@")])])
    response = await stack.put_school(bad)
    assert response.status_code == 422
    problems = {tuple(p["loc"]): p["msg"] for p in response.json()["detail"]}
    assert problems[("body", "pupils", 1, "year_group")].startswith(
        "pupil P0003: year group: not a year group (R for Reception")
    assert problems[("body", "pupils", 1, "contacts", 1, "phone")].startswith(
        "pupil P0003: contact 2 phone: not a phone number we can call or text")
    assert problems[("body", "pupils", 1, "contacts", 1, "email")].startswith(
        "pupil P0003: contact 2 email: not a usable email address")

    one = await stack.triage_api.patch(f"{SCHOOL}/pupils/P1", json={
        "id": "P9", "contacts": [{"name": "Jane", "priority": 1, "phone": "12"}]})
    assert one.status_code == 422
    assert {tuple(p["loc"]): p["msg"] for p in one.json()["detail"]} == {
        ("body", "contacts", 0, "phone"): "pupil P1: contact 1 phone: not a phone number we "
        "can call or text (write it as 07700 900123, 01632 960123 or +44 7700 900123)",
        ("body", "id"): "pupil P1: id: does not match the pupil id in the path"}
    assert (await stack.triage_api.get(SCHOOL)).json() == before


async def test_a_bank_holiday_in_term_is_not_a_school_day_and_not_counted(
        stack: Stack) -> None:
    # Monday 3 May 2027 is England's early May bank holiday; the school forgot to close it.
    stack.clock.set(dt.datetime(2027, 5, 4, 12, 0, tzinfo=LONDON))
    document = school([pupil("P1")])
    document["calendar"]["terms"].append({"start": "2027-04-19", "end": "2027-07-16"})
    assert (await stack.put_school(document)).status_code == 200
    holiday, next_day = dt.date(2027, 5, 3), dt.date(2027, 5, 4)
    marks = [mark("P1", "O", day=holiday, session="AM"), mark("P1", "O", day=next_day)]
    response = await stack.post_events(marks)
    assert response.status_code == 422
    assert [(p["loc"], p["msg"]) for p in response.json()["detail"]] == [
        (["body", 0, "date"], "not a school day: 2027-05-03 is a bank holiday (May Day)")]
    await stack.processed()
    rates = (await timeline(stack, "P1"))["rates"]
    assert (rates["possible_sessions"], rates["unauthorised_sessions"]) == (1, 1)


async def test_a_parent_with_a_landline_gets_a_call_and_an_email_never_a_text(
        stack: Stack) -> None:
    await stack.put_school(school([
        pupil("P1", "Sally", contacts=[contact(1, phone="020 7946 0123",
                                               email="p1@example.com")]),
        pupil("P2", "Tom", contacts=[contact(1, phone="07700 900002", email=None)]),
    ]))
    await stack.publish(mark("P1", "N"), mark("P2", "N"))
    await stack.processed()
    stack.at(9, 30)
    assert await stack.run_due() == 2
    await stack.handed_over()
    calls = await stack.twilio.wait_for_calls(1)
    emails = await stack.smtp.wait_for(1)
    texts = await stack.twilio.wait_for_messages(1)
    assert [t["to"] for t in texts] == ["+447700900002"], "the landline got no text"
    assert [c["to"] for c in calls] == ["+442079460123"]
    assert [e["To"] for e in emails] == ["p1@example.com"]
    async with stack.triage.engine.connect() as conn:
        reason = await conn.scalar(select(decisions.c.reason).where(
            decisions.c.pupil_id == "P1", decisions.c.rule == "first_day_contact",
            decisions.c.outcome == "requested"))
    assert reason is not None and "P1/contact/1: landline: no text message" in reason


