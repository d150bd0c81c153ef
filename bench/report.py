"""bench/results.md: one section per mode (quick, full), each replaced only by its own mode,
and one per mode for an entry reported on its own (staff pages), replaced only by a run of
that entry in that mode."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results.md")
HEADER = """# Benchmark results

Written by `make bench` (full size) and `make bench-quick`; each run replaces only its own
section below. Method: see `bench/__main__.py` and the notes in each section.
"""


@dataclass
class Report:
    mode: str
    command: str
    started: str
    machine: dict[str, Any]
    size: str
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    targets: list[tuple[str, str, bool | None]] = field(default_factory=list)
    checks: list[tuple[str, bool]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # An entry reported on its own (bench.staff_pages): its own section, its own baseline.
    entry: str | None = None
    ratio_to: str = "bare consume-and-ack ceiling"

    def figure(self, measure: str, value: str, ceiling: str = "", note: str = "") -> None:
        self.rows.append((measure, value, ceiling, note))
        print(f"  {measure}: {value}" + (f" ({ceiling} of {self.ratio_to})" if ceiling else ""),
              flush=True)

    def target(self, name: str, actual: str, passed: bool | None) -> None:
        self.targets.append((name, actual, passed))

    def check(self, name: str, ok: bool) -> None:
        self.checks.append((name, ok))
        print(f"  check {'OK' if ok else 'MISMATCH'}: {name}", flush=True)

    @property
    def ok(self) -> bool:
        return all(ok for _, ok in self.checks)

    def markdown(self) -> str:
        m = self.machine
        lines = [
            f"## {self.entry + ', ' if self.entry else ''}{self.mode} run", "",
            f"Produced by `{self.command}` on {self.started} ({self.size}).", "",
            "| machine | |", "| --- | --- |",
            f"| nproc | {m['nproc']} |", f"| memory | {m['memory']} |", f"| CPU | {m['cpu']} |",
            f"| load average at start | {m['load']} (shared machine) |", "",
            f"| measure | figure | ratio to {self.ratio_to} | notes |",
            "| --- | --- | --- | --- |",
            *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in self.rows), "",
            *(["| target | actual | verdict |", "| --- | --- | --- |",
               *(f"| {name} | {actual} | {_verdict(passed)} |"
                 for name, actual, passed in self.targets), ""] if self.targets else []),
            "| correctness check (fails the run) | result |", "| --- | --- |",
            *(f"| {name} | {'OK' if ok else '**MISMATCH**'} |" for name, ok in self.checks), "",
            *(f"- {note}" for note in self.notes), "",
        ]
        return "\n".join(lines)

    def print_summary(self) -> None:
        print("\n" + self.markdown())
        for name, actual, passed in self.targets:
            print(f"{_verdict(passed):>4}  {name}: {actual}")
        print("correctness:", "OK" if self.ok else "MISMATCH (see above)")

    def write(self) -> None:
        text = RESULTS.read_text() if RESULTS.exists() else HEADER
        key = f"{self.entry.replace(' ', '-')}:{self.mode}" if self.entry else self.mode
        begin, end = _markers(key)
        section = f"{begin}\n{self.markdown()}\n{end}"
        pattern = _section_pattern(key)
        text = pattern.sub(lambda _: section, text) if pattern.search(text) else (
            text.rstrip() + "\n\n" + section + "\n")
        RESULTS.write_text(text)


def section(key: str) -> str | None:
    """One run's section of results.md (`full`, `a-year-on:full`, ...), or None if absent."""
    found = _section_pattern(key).search(RESULTS.read_text()) if RESULTS.exists() else None
    return found.group(0) if found else None


def _markers(key: str) -> tuple[str, str]:
    return f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"


def _section_pattern(key: str) -> re.Pattern[str]:
    begin, end = _markers(key)
    return re.compile(re.escape(begin) + ".*?" + re.escape(end), re.DOTALL)


def _verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a"}[passed]
