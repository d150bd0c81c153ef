"""docs/rules.md "Contact order": a request's family is tried one contact at a time, in priority
order, until one is reached; when none can be, the `unreachable` recipients are told, once,
and triage is told too (`FamilyUnreachable`, through the transactional outbox, in the same
transaction as the chain's move): it records the decision and gives the officer a task.

The chain's state lives in `contact_requests` (state, position, check_at), so it survives a
restart; time comes from the injected clock, never from sleeping. Every step is a conditional
update on (state, position) (notifier.chains), so two replicas advancing the same chain cannot
both move it. A cancelled chain (notifier.cancellation) is never moved again.

Chains are moved on by the dispatcher alone (notifier.dispatch): `run_due` at every pass, and
`advance` when one of the chain's family rows settles (by its send or a status callback), after
the settling transaction has marked the chain for a look."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from broker_messages.contact import ContactRequest, FamilyUnreachable, FollowOn
from broker_messages.topology import FAMILY_UNREACHABLE_ROUTING_KEY
from servicekit.clock import Clock
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier import chains, notification_store
from notifier.chains import ChainState
from notifier.compose import follow_on_request, notification_rows
from notifier.intake import intake_contacts
from notifier.models import outbox
from notifier.notification_store import HANDED_OVER, Status
from notifier.templates import TemplateLibrary

log = logging.getLogger(__name__)

Outcome = Literal["reached", "waiting", "exhausted"]
NOT_DELIVERED = frozenset({Status.FAILED, Status.UNDELIVERED, Status.SUPPRESSED,
                           Status.CANCELLED})


@dataclass(frozen=True)
class ChannelState:
    channel: str
    status: str
    sent_at: dt.datetime | None


def reached(channel: str, status: str) -> bool:
    """A contact is reached when any channel is delivered; email accepted by SMTP counts (and,
    with no provider, email written to the outbox, so a local run chases as a real one)."""
    return status == Status.DELIVERED or (channel == "email" and status in HANDED_OVER)


def contact_outcome(states: Iterable[ChannelState], now: dt.datetime,
                    wait: dt.timedelta) -> tuple[Outcome, dt.datetime | None]:
    """Where one contact stands, and when to look again if it is still open. An SMS or call
    that is `sent` with no receipt after `wait` counts as not delivered."""
    states = list(states)
    if any(reached(s.channel, s.status) for s in states):
        return "reached", None
    recheck: list[dt.datetime] = []
    open_channels = 0
    for state in states:
        if state.status in NOT_DELIVERED:
            continue
        if state.status in HANDED_OVER and state.sent_at is not None:
            expires = state.sent_at + wait
            if expires <= now:
                continue
            recheck.append(expires)
        open_channels += 1
    if open_channels == 0:
        return "exhausted", None
    return "waiting", min(recheck) if recheck else None


class FamilyChase:
    def __init__(self, engine: AsyncEngine, clock: Clock, templates: TemplateLibrary,
                 wait: dt.timedelta, on_published: Callable[[], None] = lambda: None) -> None:
        self._engine = engine
        self._clock = clock
        self._templates = templates
        self._wait = wait
        # Called after a commit that put an event in the outbox (to wake its relay).
        self._on_published = on_published

    async def run_due(self) -> int:
        """Look again at every chain whose check time has come (a receipt wait over, a family
        row settled and not yet looked at); returns rows created."""
        async with self._engine.connect() as conn:
            due = await chains.due_for_check(conn, self._clock.now())
        created = 0
        for request_id in due:
            try:
                created += await self.advance(request_id)
            except Exception:  # its check time stays: the next run looks again
                log.exception("notifier.family.advance_failed request_id=%s", request_id)
        return created

    async def advance(self, request_id: str) -> int:
        """Move one chain on if its current contact is done; returns notification rows created."""
        created, announced = await self._advance(request_id)
        if announced:
            self._on_published()
        return created

    async def advance_settled(self, conn: AsyncConnection, request_ids: Sequence[str],
                              now: dt.datetime) -> tuple[int, bool]:
        """As `advance`, for the chains of a group of rows just settled, in the settling
        transaction (notifier.dispatch); returns rows created and whether triage was told a
        family is unreachable (call `published` after the commit if so).

        Under a savepoint: a chain that cannot be moved costs neither the settlements nor the
        marks they left, so the next pass looks again. The chains are locked in sorted order,
        so two groups cannot wait for each other."""
        try:
            async with conn.begin_nested():
                outcomes: list[tuple[int, bool]] = []
                waiting = await self._still_waiting(conn, sorted(set(request_ids)), now)
                for request_id in sorted(set(request_ids) - set(waiting)):
                    outcomes.append(await self._advance_in(conn, request_id, now))
                for recheck, ids in _grouped(waiting).items():
                    await chains.check_again_at(conn, ids, recheck, now)
        except Exception:  # marked for a look: the next pass moves them
            log.exception("notifier.family.advance_failed chains=%d", len(request_ids))
            return 0, False
        return (sum(created for created, _ in outcomes),
                any(announced for _, announced in outcomes))

    def published(self) -> None:
        """An event is in the outbox since the last commit: wake its relay."""
        self._on_published()

    async def _still_waiting(self, conn: AsyncConnection, request_ids: list[str],
                             now: dt.datetime) -> dict[str, dt.datetime | None]:
        """The common case in a few statements, whatever the group's size: locked (sorted),
        the chains whose current contact is still open, and when to look at each again.
        Every other chain takes its step alone (`_advance_in`)."""
        locked = await chains.locked_many(conn, request_ids)
        rows = await notification_store.family_rows_of(conn, [c.request_id for c in locked
                                                               if c.state == ChainState.CHASING])
        waiting: dict[str, dt.datetime | None] = {}
        for chain in locked:
            if chain.state != ChainState.CHASING:
                continue
            mine = rows.get(chain.request_id, [])
            if any(reached(row.channel, row.status) for row in mine):
                continue
            outcome, recheck = contact_outcome(
                (ChannelState(r.channel, r.status, r.sent_at) for r in mine
                 if r.family_index == chain.position), now, self._wait)
            if outcome == "waiting":
                waiting[chain.request_id] = recheck
        return waiting

    async def _advance(self, request_id: str) -> tuple[int, bool]:
        """As `advance`; also says whether triage was told the family is unreachable."""
        async with self._engine.begin() as conn:
            return await self._advance_in(conn, request_id, self._clock.now())

    async def _advance_in(self, conn: AsyncConnection, request_id: str,
                          now: dt.datetime) -> tuple[int, bool]:
        """One chain's step, in the caller's transaction."""
        chain = await chains.locked(conn, request_id)
        if chain is None or chain.state != ChainState.CHASING:
            return 0, False
        rows = await notification_store.family_rows(conn, request_id)
        if any(reached(row.channel, row.status) for row in rows):
            await chains.move(conn, chain, "reach", now, state=ChainState.REACHED)
            log.info("notifier.family.reached request_id=%s", request_id)
            return 0, False
        outcome, recheck = contact_outcome(
            (ChannelState(r.channel, r.status, r.sent_at) for r in rows
             if r.family_index == chain.position), now, self._wait)
        if outcome != "exhausted":
            await chains.check_again_at(conn, [request_id], recheck, now)
            return 0, False
        request = ContactRequest.model_validate_json(chain.payload)
        position = chain.position + 1
        if position < len(request.family):
            if not await chains.move(conn, chain, "next_contact", now, position=position):
                return 0, False
            new_rows = notification_rows(self._templates, request, request.family[position],
                                         kind="family", family_index=position, now=now)
            log.info("notifier.family.fallback request_id=%s contact_ref=%s", request_id,
                     request.family[position].ref)
        elif request.follow_on:
            if not await chains.move(conn, chain, "split", now, state=ChainState.SPLIT):
                return 0, False
            new_rows, announced = [], False
            for follow_on in request.follow_on:
                child_rows, told = await self._follow_on(conn, request, follow_on, now)
                new_rows += child_rows
                announced |= told
            log.info("notifier.family.split request_id=%s children=%d", request_id,
                     len(request.follow_on))
            await notification_store.add(conn, new_rows)
            return len(new_rows), announced
        else:
            if not await chains.move(conn, chain, "exhaust", now,
                                     state=ChainState.UNREACHABLE):
                return 0, False
            new_rows = self._unreachable(request, now)
            await _announce_unreachable(conn, request, now)
        await notification_store.add(conn, new_rows)
        return len(new_rows), position >= len(request.family)

    def _unreachable(self, request: ContactRequest, now: dt.datetime) -> list[dict[str, Any]]:
        """The alerts to the request's `unreachable` recipients."""
        rows = [row for recipient in request.unreachable
                for row in notification_rows(self._templates, request, recipient,
                                             kind="unreachable", now=now)]
        log.warning("notifier.family.unreachable request_id=%s alerts=%d", request.request_id,
                    len(rows))
        return rows

    async def _follow_on(self, conn: AsyncConnection, request: ContactRequest,
                         follow_on: FollowOn, now: dt.datetime
                         ) -> tuple[list[dict[str, Any]], bool]:
        """One child's own chain after the shared carer: a request of its own naming only that
        child (so a reply or a cancellation finds it), its first contact tried now; nobody
        left for that child is that child's family unreachable."""
        child = follow_on_request(request, follow_on)
        await chains.open_chains(conn, [chains.new_chain(child, now)])
        await intake_contacts(conn, child, now)
        if child.family:
            return notification_rows(self._templates, child, child.family[0], kind="family",
                                     family_index=0, now=now), False
        rows = self._unreachable(child, now)
        await _announce_unreachable(conn, child, now)
        return rows, True


def _grouped(waiting: dict[str, dt.datetime | None]) -> dict[dt.datetime | None, list[str]]:
    by_time: dict[dt.datetime | None, list[str]] = {}
    for request_id, recheck in waiting.items():
        by_time.setdefault(recheck, []).append(request_id)
    return by_time


async def _announce_unreachable(conn: AsyncConnection, request: ContactRequest,
                                now: dt.datetime) -> None:
    """Triage decides what follows (with or without `unreachable` recipients to alert here)."""
    event = FamilyUnreachable(
        request_id=request.request_id, rule=request.rule, school_urn=request.school.urn,
        pupil_ids=tuple(p.pupil_id for p in request.pupils), date=request.date,
        episode_start=request.episode_start, contacts_tried=len(request.family),
        detected_at=now)
    await conn.execute(outbox.insert().values(
        message_id=request.request_id, routing_key=FAMILY_UNREACHABLE_ROUTING_KEY,
        body=event.model_dump_json(by_alias=True).encode(), created_at=now))
