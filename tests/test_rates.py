"""docs/rules.md "Rates" rates: the incremental counters always equal a recount from scratch, for any
sequence of marks and amendments in any arrival order (property-based)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

from broker_messages.codes import CODE_CATEGORIES, LEGACY_CODES
from broker_messages.events import EVENT_ADAPTER
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servicekit.clock import FrozenClock
from servicekit.database import make_engine
from triage import counters
from triage.ingest import Ingestor
from triage.migrations import upgrade
from triage.rates import Counts, counts_from_codes, delta, school_year_start
from triage.rules.thresholds import Threshold
from triage.school_document import SchoolDocument
from triage.schools import SchoolContextCache, store_school

from tests.factories import LONDON, pupil, school

CODES = sorted(CODE_CATEGORIES) + sorted(LEGACY_CODES)
DAYS = [dt.date(2026, 7, 30), dt.date(2026, 9, 7), dt.date(2026, 9, 8), dt.date(2026, 11, 23)]


def test_one_absent_session_in_week_one_is_100_percent_but_not_actionable() -> None:
    from triage.rates import rates_actionable
    counts = counts_from_codes(["N"])
    assert counts.absence_rate == 1.0 and not rates_actionable(counts, 20)


def test_rates_follow_the_definitions() -> None:
    counts = counts_from_codes(["/", "\\", "L", "V", "I", "N", "#", "D", "Y1"])
    assert counts == Counts(possible=6, authorised=1, unauthorised=1)
    assert counts.absence_rate == 2 / 6 and counts.attendance_rate == 1 - 2 / 6


def test_school_year_starts_on_1_august() -> None:
    assert school_year_start(dt.date(2026, 7, 31)) == dt.date(2025, 8, 1)
    assert school_year_start(dt.date(2026, 9, 3)) == dt.date(2026, 8, 1)


@given(st.lists(st.sampled_from(CODES), min_size=1, max_size=12))
def test_deltas_along_any_chain_of_amendments_sum_to_the_last_code(codes: list[str]) -> None:
    total = delta(None, codes[0])
    for old, new in itertools.pairwise(codes):
        total = total + delta(old, new)
    assert total == counts_from_codes([codes[-1]])


mark_strategy = st.tuples(
    st.sampled_from(["P1", "P2"]), st.sampled_from(DAYS), st.sampled_from(["AM", "PM"]),
    st.sampled_from(CODES), st.integers(min_value=0, max_value=5),  # recorded minute
)


class _Db:
    """One SQLite database for every example (a fresh URN per example keeps them apart)."""

    def __init__(self, path: Path) -> None:
        self.engine = make_engine(f"sqlite+aiosqlite:///{path}")
        self.clock = FrozenClock(dt.datetime(2026, 11, 23, 18, 0, tzinfo=LONDON))
        self.ingestor = Ingestor(self.engine, self.clock, SchoolContextCache())
        self.counter = itertools.count(100000)

    async def school(self) -> str:
        urn = str(next(self.counter))
        document = school([pupil("P1", contacts=[]), pupil("P2", contacts=[])], urn=urn)
        document["calendar"]["terms"].insert(0, {"start": "2026-04-13", "end": "2026-07-31"})
        async with self.engine.begin() as conn:
            await store_school(conn, SchoolDocument.model_validate(document), self.clock.now())
        return urn


def _event(urn: str, item: tuple[str, dt.date, str, str, int]) -> Any:
    pupil_id, day, session, code, minute = item
    recorded = dt.datetime.combine(day, dt.time(8, 50 + minute), tzinfo=LONDON)
    return EVENT_ADAPTER.validate_python({
        "schema": "register.mark/v1", "event_id": uuid.uuid4().hex, "school_urn": urn,
        "pupil_id": pupil_id, "date": day.isoformat(), "session": session, "code": code,
        "recorded_at": recorded.isoformat()})


def test_incremental_counters_equal_a_recount_for_any_arrival_order(tmp_path: Path) -> None:
    db = _Db(tmp_path / "rates.db")
    loop = asyncio.new_event_loop()
    loop.run_until_complete(upgrade(db.engine))

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(marks=st.lists(mark_strategy, min_size=1, max_size=25),
           cuts=st.lists(st.integers(min_value=1, max_value=25), max_size=4),
           order=st.randoms(use_true_random=False))
    def check(marks: list[Any], cuts: list[int], order: Any) -> None:
        async def run() -> None:
            urn = await db.school()
            events = [_event(urn, m) for m in marks]
            order.shuffle(events)
            bounds = sorted({0, len(events), *(c for c in cuts if c < len(events))})
            for start, end in itertools.pairwise(bounds):  # batches of any size
                await db.ingestor.apply(events[start:end])
            async with db.engine.connect() as conn:
                for pupil_id in ("P1", "P2"):
                    for year in {school_year_start(d) for d in DAYS}:
                        stored = (await counters.load(conn, [(urn, pupil_id, year)])).popitem()[1]
                        assert stored == await counters.recount(conn, urn, pupil_id, year)
        loop.run_until_complete(run())

    try:
        check()
    finally:
        loop.run_until_complete(db.engine.dispose())
        loop.close()


@given(possible=st.integers(1, 400), data=st.data(),
       line=st.sampled_from([0.1, 0.5, 0.9, 0.92, 0.3333, 0.01, 0.99]),
       kind=st.sampled_from(["attendance_below", "absence_at"]))
def test_a_crossing_is_judged_exactly_as_fractions_judge_it(
        possible: int, data: st.DataObject, line: float, kind: str) -> None:
    """`Threshold.crossed` compares whole numbers; the answer is the exact fractions' answer."""
    absent = data.draw(st.integers(0, possible))
    counts = Counts(possible, absent, 0)
    exact_line, absence = Fraction(repr(line)), Fraction(absent, possible)
    expected = 1 - absence < exact_line if kind == "attendance_below" else absence >= exact_line
    assert Threshold("r", kind, line).crossed(counts) is expected  # type: ignore[arg-type]
