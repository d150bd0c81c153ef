from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class NotifierMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("notifier_requests_total", "Contact requests consumed, by outcome",
                                ["outcome"], registry=self.registry)
        self.rejected = Counter("notifier_requests_rejected_total",
                                "Contact requests dead-lettered", ["reason"],
                                registry=self.registry)
        self.notifications = Counter("notifier_notifications_total",
                                     "Notifications settled, by rule, channel and status",
                                     ["rule", "channel", "status"], registry=self.registry)
        self.provider_errors = Counter("notifier_provider_errors_total",
                                       "Provider failures, by channel and error code",
                                       ["channel", "code"], registry=self.registry)
        self.callbacks = Counter("notifier_status_callbacks_total", "Twilio status callbacks",
                                 ["outcome"], registry=self.registry)
