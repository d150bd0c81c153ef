"""Message schemas and broker topology shared by triage and the notifier.

Everything that crosses RabbitMQ is defined here once, so both services (and the tests)
agree on names, routing keys and payloads.
"""
