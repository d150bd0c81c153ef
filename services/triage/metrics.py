from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


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
        self.queue_lag = Gauge(
            "triage_queue_messages", "Messages waiting in triage's queue at the last check",
            registry=self.registry,
        )
        self.contacts_requested = Counter(
            "triage_contacts_requested_total", "Contact requests handed to the notifier",
            registry=self.registry,
        )
