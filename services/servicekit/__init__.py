"""Plumbing both services share: clock, database engine, broker publishing, the
transactional outbox, metrics, logging and API authentication. No domain logic lives here."""
