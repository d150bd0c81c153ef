"""Contract-level fuzzing of both OpenAPI specs (schemathesis): whatever the input, no 5xx."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.processes import ServiceProcess, base_environment

TOKEN = "fuzz-token"


@pytest.fixture(scope="module")
def running_services(amqp_url: str, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[dict[str, ServiceProcess]]:
    workdir = tmp_path_factory.mktemp("fuzz")
    env = base_environment() | {"AMQP_URL": amqp_url, "API_TOKEN": TOKEN,
                                "LOG_LEVEL": "WARNING"}
    services = {name: ServiceProcess(name, env, workdir) for name in ("triage", "notifier")}
    for service in services.values():
        service.start()
    try:
        for service in services.values():
            asyncio.run(service.ready())
        yield services
    finally:
        for service in services.values():
            service.stop()


@pytest.fixture(scope="module")
def triage_schema(running_services: dict[str, ServiceProcess]) -> object:
    return schemathesis.openapi.from_url(f"{running_services['triage'].url}/openapi.json")


@pytest.fixture(scope="module")
def notifier_schema(running_services: dict[str, ServiceProcess]) -> object:
    return schemathesis.openapi.from_url(f"{running_services['notifier'].url}/openapi.json")


FUZZ = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def _fuzz(schema: Any) -> int:
    """Every operation of the schema, with generated valid and invalid-ish inputs."""
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @FUZZ
        def call(case: Any) -> None:
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:300]}")

        call()
    return operations


def test_triage_api_never_answers_5xx(triage_schema: Any) -> None:
    assert _fuzz(triage_schema) >= 4


def test_notifier_api_never_answers_5xx(notifier_schema: Any) -> None:
    assert _fuzz(notifier_schema) >= 1


def test_fuzzing_left_no_traceback_in_the_logs(running_services: dict[str, ServiceProcess]
                                               ) -> None:
    for service in running_services.values():
        assert "Traceback" not in service.log_text(), service.log_text()[-3000:]
