"""docker-compose.cluster.yml forms a three-node RabbitMQ cluster and a PostgreSQL primary with
a streaming standby, and points every service at all of them.

Docker does not run here, so the file is parsed and checked for what `docker compose up`
would only reveal by failing: node names against the peer list in infra/rabbitmq/cluster.conf,
one shared Erlang cookie, the broker and database URLs naming every node, the standby built
from the primary, mounted files that exist, and settings each service accepts.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.contract_settings import SETTINGS, STRONG_SECRET, allowed_settings, every_setting

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_FILE = ROOT / "docker-compose.cluster.yml"
CLUSTER_CONF = ROOT / "infra" / "rabbitmq" / "cluster.conf"
RABBITMQ_CONF = ROOT / "infra" / "rabbitmq" / "rabbitmq.conf"
DEFINITIONS_FILE = ROOT / "infra" / "rabbitmq" / "definitions.json"
INIT_SQL = ROOT / "infra" / "postgres" / "init.sql"
REPLICATION_SCRIPT = ROOT / "infra" / "postgres" / "replication.sh"
STANDBY_SCRIPT = ROOT / "infra" / "postgres" / "standby.sh"

NODES = ["rabbit-1", "rabbit-2", "rabbit-3"]
PRIMARY, STANDBY = "postgres-primary", "postgres-standby"
# (compose service, its broker user or None, database URL variable, database)
APPS = [
    ("triage", "absence-triage", "TRIAGE_DATABASE_URL", "triage"),
    ("notifier", "absence-notifier", "NOTIFIER_DATABASE_URL", "notifier"),
    ("staff", None, "STAFF_DATABASE_URL", "staff"),
]
# What the operator exports before `up` (the file's header says so).
HOST_ENVIRONMENT = {
    "API_TOKEN": STRONG_SECRET, "CONTACT_SIGNING_KEY": STRONG_SECRET * 2,
    "RABBITMQ_ERLANG_COOKIE": "c" * 40, "STAFF_PUBLIC_URL": "https://localhost:8003",
}


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    loaded = yaml.safe_load(CLUSTER_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _interpolate(value: str, environment: dict[str, str]) -> str:
    """What compose substitutes, given the host's `environment`: `${X:?…}` must be set."""
    def substitute(match: re.Match[str]) -> str:
        name, operator, default = match.group(1), match.group(2) or "", match.group(3) or ""
        if operator == ":?":
            assert name in environment, f"compose would stop: {name} is required"
        return environment.get(name) or default

    return re.sub(r"\$\{(\w+)(?:(:\?|:?-)([^}]*))?\}", substitute, value).replace("$$", "$")


def _environment(cluster: dict[str, Any], service: str) -> dict[str, str | None]:
    raw = cluster["services"][service].get("environment") or {}
    return {key: None if value is None else _interpolate(str(value), HOST_ENVIRONMENT)
            for key, value in raw.items()}


def _mounts(cluster: dict[str, Any], service: str) -> list[tuple[str, str]]:
    """(source, target) of each volume entry."""
    return [tuple(str(entry).split(":")[:2])  # type: ignore[misc]
            for entry in cluster["services"][service].get("volumes") or []]


def _mounted_at(cluster: dict[str, Any], service: str) -> dict[str, str]:
    """{target: source} of each volume entry."""
    return {target: source for source, target in _mounts(cluster, service)}


def _depends_on(cluster: dict[str, Any], service: str) -> dict[str, str]:
    raw = cluster["services"][service].get("depends_on") or {}
    return {name: spec["condition"] for name, spec in raw.items()}


def _conf(path: Path) -> dict[str, str]:
    settings = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


# ---------------------------------------------------------------------------------------
# RabbitMQ


def test_three_broker_nodes_each_with_its_own_name_data_and_port(cluster: dict[str, Any]) -> None:
    services = cluster["services"]
    assert [name for name in services if name.startswith("rabbit-")] == NODES
    assert [services[node]["hostname"] for node in NODES] == NODES
    data = [source for node in NODES for source, target in _mounts(cluster, node)
            if target == "/var/lib/rabbitmq"]
    assert len(set(data)) == 3, "each node needs its own data directory"
    assert set(data) <= set(cluster["volumes"])
    amqp_ports = [port for node in NODES for port in services[node]["ports"]
                  if port.endswith(":5672")]
    assert len(amqp_ports) == 3 and len(set(amqp_ports)) == 3
    assert all(port.startswith("127.0.0.1:") for node in NODES for port in services[node]["ports"])
    assert len({services[node]["image"] for node in NODES}) == 1


def test_the_nodes_share_one_required_erlang_cookie(cluster: dict[str, Any]) -> None:
    raw = [cluster["services"][node]["environment"]["RABBITMQ_ERLANG_COOKIE"] for node in NODES]
    assert len(set(raw)) == 1
    assert re.fullmatch(r"\$\{RABBITMQ_ERLANG_COOKIE:\?[^}]+\}", raw[0]), "no default cookie"


def test_the_nodes_find_each_other_through_the_classic_config_peer_list(
        cluster: dict[str, Any]) -> None:
    conf = _conf(CLUSTER_CONF)
    assert conf["cluster_formation.peer_discovery_backend"] == "classic_config"
    peers = {value for key, value in conf.items()
             if key.startswith("cluster_formation.classic_config.nodes.")}
    assert peers == {f"rabbit@{cluster['services'][node]['hostname']}" for node in NODES}
    assert conf["cluster_partition_handling"] == "autoheal"
    assert conf["quorum_queue.continuous_membership_reconciliation.target_group_size"] == "3"
    for node in NODES:
        conf_d = {target: (ROOT / source).resolve()
                  for target, source in _mounted_at(cluster, node).items()
                  if target.startswith("/etc/rabbitmq/conf.d/")}
        assert set(conf_d.values()) == {RABBITMQ_CONF, CLUSTER_CONF}, node
        assert len(conf_d) == 2


def test_the_topology_is_imported_once_every_node_is_up(cluster: dict[str, Any]) -> None:
    importer = cluster["services"]["rabbitmq-definitions"]
    assert any((ROOT / source).resolve() == DEFINITIONS_FILE
               for source, _ in _mounts(cluster, "rabbitmq-definitions"))
    assert _depends_on(cluster, "rabbitmq-definitions") == dict.fromkeys(NODES, "service_healthy")
    host = re.search(r"--host=([\w-]+)", importer["command"][0])
    assert host and host.group(1) in NODES


@pytest.mark.parametrize("service,user", [(app, user) for app, user, _, _ in APPS if user])
def test_the_services_list_every_broker_node(
        cluster: dict[str, Any], service: str, user: str) -> None:
    urls = [urlsplit(url) for url in (_environment(cluster, service)["AMQP_URL"] or "").split(",")]
    assert [url.hostname for url in urls] == NODES
    assert {(url.scheme, url.port, url.username, url.path) for url in urls} == {
        ("amqp", 5672, user, "/")}
    conditions = _depends_on(cluster, service)
    assert {node: conditions.get(node) for node in NODES} == dict.fromkeys(NODES, "service_healthy")
    assert conditions["rabbitmq-definitions"] == "service_completed_successfully"


# ---------------------------------------------------------------------------------------
# PostgreSQL


@pytest.mark.parametrize("service,variable,database",
                         [(app, variable, database) for app, _, variable, database in APPS])
def test_the_services_name_both_database_servers_and_want_the_writable_one(
        cluster: dict[str, Any], service: str, variable: str, database: str) -> None:
    url = urlsplit(_environment(cluster, service)[variable] or "")
    assert url.scheme == "postgresql+asyncpg"
    assert url.hostname is None, "the hosts go in the query, where the driver takes several"
    assert url.path == f"/{database}"
    query = parse_qs(url.query)
    assert query["host"] == [f"{PRIMARY}:5432", f"{STANDBY}:5432"]
    assert query["target_session_attrs"] == ["read-write"]
    created = re.findall(r'create\s+database\s+"?(\w+)"?', INIT_SQL.read_text(), re.IGNORECASE)
    assert database in created
    assert _depends_on(cluster, service)[PRIMARY] == "service_healthy"


def test_the_primary_creates_the_databases_and_the_replication_role(
        cluster: dict[str, Any]) -> None:
    init = sorted((target, (ROOT / source).resolve()) for source, target in _mounts(cluster, PRIMARY)
                  if target.startswith("/docker-entrypoint-initdb.d/"))
    assert [path for _, path in init] == [INIT_SQL, REPLICATION_SCRIPT]
    assert os.access(REPLICATION_SCRIPT, os.X_OK)
    script = REPLICATION_SCRIPT.read_text()
    assert "WITH REPLICATION LOGIN" in script
    assert re.search(r"host replication \$REPLICATION_USER all scram-sha-256.*pg_hba\.conf", script)


def test_the_standby_is_a_base_backup_of_the_primary_started_by_the_image_entrypoint(
        cluster: dict[str, Any]) -> None:
    standby = cluster["services"][STANDBY]
    primary = cluster["services"][PRIMARY]
    assert standby["image"] == primary["image"]
    [entrypoint] = standby["entrypoint"]
    assert (ROOT / _mounted_at(cluster, STANDBY)[entrypoint]).resolve() == STANDBY_SCRIPT
    assert os.access(STANDBY_SCRIPT, os.X_OK)
    script = STANDBY_SCRIPT.read_text()
    assert re.search(r"pg_basebackup .*--write-recovery-conf", script.replace("\\\n", " "))
    assert script.rstrip().splitlines()[-1] == 'exec docker-entrypoint.sh "$@"'
    env, primary_env = _environment(cluster, STANDBY), _environment(cluster, PRIMARY)
    assert env["PRIMARY_HOST"] == PRIMARY
    for name in ("REPLICATION_USER", "REPLICATION_PASSWORD"):
        assert env[name] and env[name] == primary_env[name], name
    assert _depends_on(cluster, STANDBY) == {PRIMARY: "service_healthy"}
    data = "/var/lib/postgresql/data"
    assert _mounted_at(cluster, STANDBY)[data] != _mounted_at(cluster, PRIMARY)[data]


# ---------------------------------------------------------------------------------------
# The file as a whole


def test_every_mounted_file_exists_and_every_volume_is_declared(cluster: dict[str, Any]) -> None:
    for service in cluster["services"]:
        for source, _ in _mounts(cluster, service):
            if source.startswith("."):
                assert (ROOT / source).is_file(), f"{service}: {source} does not exist"
            else:
                assert source in cluster["volumes"], f"{service}: volume {source} undeclared"


def test_every_dependency_is_a_service_and_awaited_health_is_checked(
        cluster: dict[str, Any]) -> None:
    services = cluster["services"]
    for service in services:
        for dependency, condition in _depends_on(cluster, service).items():
            assert dependency in services, f"{service} waits for unknown {dependency}"
            if condition == "service_healthy":
                assert services[dependency].get("healthcheck"), dependency


def test_every_port_is_published_on_loopback_unless_told_otherwise(
        cluster: dict[str, Any]) -> None:
    for name, service in cluster["services"].items():
        for entry in service.get("ports") or []:
            address = _interpolate(str(entry), {}).rsplit(":", 2)[0]
            assert address == "127.0.0.1", f"{name} publishes {entry} beyond loopback"


@pytest.mark.parametrize("service", [app for app, *_ in APPS])
def test_the_service_runs_its_module_with_settings_it_accepts(
        cluster: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = cluster["services"][service]
    assert spec["build"] == "."
    assert spec["command"] == ["python", "-m", service]
    env = _environment(cluster, service)
    unknown = set(env) - allowed_settings(service)
    assert not unknown, f"{service}: not settings of this service in docs/contract.md §1"
    for name in every_setting():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if value:  # compose leaves an empty pass-through unset
            monkeypatch.setenv(name, value)
    # The image sets *_HOST=0.0.0.0 for the two services (Dockerfile); the staff app sets its own.
    monkeypatch.setenv(f"{service.upper()}_HOST", "0.0.0.0")
    SETTINGS[service](_env_file=None)  # type: ignore[call-arg]
