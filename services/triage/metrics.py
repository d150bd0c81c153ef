from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class TriageMetrics:
    """One registry per service instance, so two services can share a test process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "triage_events_total", "Events consumed, by outcome", ["outcome"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "triage_events_rejected_total", "Events dead-lettered, by reason",
            ["reason"], registry=self.registry,
        )
        # Counted when the broker confirms the request, not when a rule decides: a request
        # still in the outbox has not reached the notifier.
        self.contacts_requested = Counter(
            "triage_contacts_requested_total",
            "Contact requests handed to the notifier (published with a broker confirm)",
            registry=self.registry,
        )
