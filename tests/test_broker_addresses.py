"""`AMQP_URL` naming several nodes: the connection takes the first address that answers, and
refuses to start only when none does. Failover while running is proven on a real cluster in
tests/test_cluster_broker.py (`make test-cluster`)."""

from __future__ import annotations

import pytest
from servicekit import broker
from yarl import URL

from tests.rabbit_cluster import free_port


def _refused() -> str:
    """An address where nothing listens (the port was free a moment ago)."""
    return f"amqp://guest:guest@127.0.0.1:{free_port()}/"


async def test_the_first_address_that_answers_is_used(amqp_url: str) -> None:
    connection = await broker.connect(f"{_refused()},{_refused()},{amqp_url}")
    try:
        assert broker.is_connected(connection)
        assert isinstance(connection, broker.FailoverConnection)
        assert connection.url == URL(amqp_url)
    finally:
        await broker.close_quietly(connection)


async def test_a_service_does_not_start_when_no_address_answers() -> None:
    with pytest.raises(ConnectionError):
        await broker.connect(f"{_refused()},{_refused()}", connect_timeout=5)
