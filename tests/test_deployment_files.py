"""The deployment files agree with the code and with each other.

Static checks, no Docker needed: definitions.json against `broker_messages.topology`,
docker-compose.yml against the environment contract, the Dockerfile against the paths the
services are told about.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from broker_messages import topology

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEFINITIONS_FILE = ROOT / "infra" / "rabbitmq" / "definitions.json"
RABBITMQ_CONF = ROOT / "infra" / "rabbitmq" / "rabbitmq.conf"
INIT_SQL = ROOT / "infra" / "postgres" / "init.sql"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

VHOST = "/"

# (compose service, module, port, database URL variable, database name)
APP_SERVICES = [
    ("triage", "triage", 8001, "TRIAGE_DATABASE_URL", "triage"),
    ("notifier", "notifier", 8002, "NOTIFIER_DATABASE_URL", "notifier"),
]
app_services = pytest.mark.parametrize(
    "service,module,port,database_variable,database_name",
    APP_SERVICES,
    ids=[row[0] for row in APP_SERVICES],
)


# ---------------------------------------------------------------------------------------
# docker-compose.yml


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), "docker-compose.yml is not a mapping"
    return loaded


def _interpolate(value: str) -> str:
    """What compose substitutes when the host sets none of the variables."""
    value = re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)
    return value.replace("$$", "$")


def _environment(compose: dict[str, Any], service: str) -> dict[str, str | None]:
    raw = compose["services"][service].get("environment") or {}
    if isinstance(raw, list):  # ["KEY=value", "PASSED_THROUGH"]
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    return {key: None if value is None else _interpolate(str(value)) for key, value in raw.items()}


def _depends_on(compose: dict[str, Any], service: str) -> dict[str, str]:
    raw = compose["services"][service].get("depends_on") or {}
    if isinstance(raw, list):  # the short form has no conditions at all
        return {name: "service_started" for name in raw}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in raw.items()}


def _published_ports(compose: dict[str, Any], service: str) -> set[tuple[int, int]]:
    """(host port, container port) pairs."""
    published = set()
    for entry in compose["services"][service].get("ports") or []:
        if isinstance(entry, dict):
            published.add((int(entry["published"]), int(entry["target"])))
        else:
            *_, host, container = str(entry).split("/")[0].split(":")
            published.add((int(host), int(container)))
    return published


def _mounts(compose: dict[str, Any], service: str) -> list[tuple[str, str, str]]:
    """(type, source, target) for each volume entry; type is "bind" or "volume"."""
    mounts = []
    for entry in compose["services"][service].get("volumes") or []:
        if isinstance(entry, dict):
            mounts.append((entry["type"], entry.get("source", ""), entry["target"]))
            continue
        source, target, *_ = str(entry).split(":")
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        mounts.append((kind, source, target))
    return mounts


def _healthcheck_command(compose: dict[str, Any], service: str) -> str:
    test = (compose["services"][service].get("healthcheck") or {}).get("test") or []
    return " ".join(test) if isinstance(test, list) else str(test)


def test_compose_defines_the_six_services(compose: dict[str, Any]) -> None:
    expected = {"rabbitmq", "postgres", "mailpit", "triage", "notifier", "staff"}
    assert expected <= set(compose.get("services") or {})


def test_the_staff_app_calls_the_services_and_keeps_its_own_database(
        compose: dict[str, Any]) -> None:
    spec = compose["services"]["staff"]
    assert spec["command"] == ["python", "-m", "staff"]
    env = _environment(compose, "staff")
    assert (env["STAFF_TRIAGE_URL"], env["STAFF_NOTIFIER_URL"]) == (
        "http://triage:8001", "http://notifier:8002")
    assert urlsplit(env["STAFF_DATABASE_URL"]).path == "/staff"
    assert "AMQP_URL" not in env, "the staff app reads and changes data only through the APIs"
    assert ":?" in str(spec["environment"]["STAFF_PUBLIC_URL"]), "no default public address"


@app_services
def test_services_are_built_from_this_repo_and_run_their_module(
    compose: dict[str, Any], service: str, module: str, port: int,
    database_variable: str, database_name: str,
) -> None:
    spec = compose["services"][service]
    build = spec.get("build")
    context = build.get("context") if isinstance(build, dict) else build
    assert context in (".", "./"), f"{service} is not built from the repository root"
    command = spec.get("command")
    command = command if isinstance(command, list) else str(command).split()
    assert command == ["python", "-m", module]


@app_services
def test_services_environment_points_at_compose_infrastructure(
    compose: dict[str, Any], service: str, module: str, port: int,
    database_variable: str, database_name: str,
) -> None:
    env = _environment(compose, service)

    amqp = urlsplit(env.get("AMQP_URL") or "")
    assert (amqp.scheme, amqp.hostname, amqp.port or 5672) == ("amqp", "rabbitmq", 5672)

    database_url = env.get(database_variable) or ""
    assert database_url.startswith("postgresql+asyncpg://"), database_url
    database = urlsplit(database_url)
    assert (database.hostname, database.path) == ("postgres", f"/{database_name}")

    # Required by both services: a default (or the host's value) must always reach them.
    assert env.get("API_TOKEN"), f"{service} gets no API_TOKEN"
    assert env.get(f"{module.upper()}_PORT") == str(port)


@app_services
def test_services_wait_for_a_healthy_broker_and_database(
    compose: dict[str, Any], service: str, module: str, port: int,
    database_variable: str, database_name: str,
) -> None:
    depends_on = _depends_on(compose, service)
    assert depends_on.get("rabbitmq") == "service_healthy"
    assert depends_on.get("postgres") == "service_healthy"


def test_every_awaited_health_has_a_healthcheck(compose: dict[str, Any]) -> None:
    # `condition: service_healthy` on a service without a healthcheck never starts the dependant.
    awaited = {
        dependency
        for service in compose["services"]
        for dependency, condition in _depends_on(compose, service).items()
        if condition == "service_healthy"
    }
    assert {"rabbitmq", "postgres"} <= awaited
    for service in awaited:
        assert _healthcheck_command(compose, service).strip(), f"{service} has no healthcheck"
    assert "rabbitmq-diagnostics" in _healthcheck_command(compose, "rabbitmq")
    assert "pg_isready" in _healthcheck_command(compose, "postgres")


@app_services
def test_services_publish_their_port(
    compose: dict[str, Any], service: str, module: str, port: int,
    database_variable: str, database_name: str,
) -> None:
    assert (port, port) in _published_ports(compose, service)


def test_every_port_is_published_on_loopback_unless_told_otherwise(
        compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for entry in service.get("ports") or []:
            address = _interpolate(str(entry)).rsplit(":", 2)[0]
            assert address == "127.0.0.1", f"{name} publishes {entry} beyond loopback"


@app_services
def test_the_api_token_has_no_default_and_is_required(
    compose: dict[str, Any], service: str, module: str, port: int,
    database_variable: str, database_name: str,
) -> None:
    raw = compose["services"][service]["environment"]["API_TOKEN"]
    assert re.fullmatch(r"\$\{API_TOKEN:\?[^}]+\}", raw), f"{service}: API_TOKEN is {raw!r}"


def test_notifier_mails_mailpit_and_keeps_sms_local_without_twilio(compose: dict[str, Any]) -> None:
    env = _environment(compose, "notifier")
    assert (env.get("SMTP_HOST"), env.get("SMTP_PORT")) == ("mailpit", "1025")
    assert "mailpit" in _depends_on(compose, "notifier")
    # With nothing set on the host, no Twilio credential may reach the notifier.
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM",
                 "TWILIO_MESSAGING_SERVICE_SID"):
        assert not env.get(name), f"{name} has a default"
    # The SMS outbox must be on a volume, or it is lost with the container.
    outbox_dir = env.get("OUTBOX_DIR") or "/app/var/outbox"
    assert any(kind == "volume" and target == outbox_dir
               for kind, _, target in _mounts(compose, "notifier")), "no volume at OUTBOX_DIR"


def test_every_mounted_repository_file_exists(compose: dict[str, Any]) -> None:
    bind_sources = [
        source
        for service in compose["services"]
        for kind, source, _ in _mounts(compose, service)
        if kind == "bind"
    ]
    assert bind_sources, "no files from the repository are mounted"
    for source in bind_sources:
        assert not source.startswith(("/", "~")), f"{source}: mount repository files relatively"
        assert (ROOT / source).is_file(), f"{source} is mounted but does not exist"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    used = {
        source
        for service in compose["services"]
        for kind, source, _ in _mounts(compose, service)
        if kind == "volume"
    }
    assert used, "no named volumes: broker, database and outbox data would be lost"
    assert used <= set(compose.get("volumes") or {})


def test_postgres_init_creates_the_databases_the_services_use(compose: dict[str, Any]) -> None:
    assert any(
        kind == "bind" and (ROOT / source).resolve() == INIT_SQL
        and target.startswith("/docker-entrypoint-initdb.d/")
        for kind, source, target in _mounts(compose, "postgres")
    ), "init.sql is not mounted into /docker-entrypoint-initdb.d"
    created = set(re.findall(r'create\s+database\s+"?(\w+)"?', INIT_SQL.read_text(), re.IGNORECASE))
    used = {
        urlsplit(_environment(compose, service)[variable] or "").path.lstrip("/")
        for service, _, _, variable, _ in APP_SERVICES
    }
    assert used == {"triage", "notifier"}
    assert used | {"staff"} <= created


def test_definitions_are_imported_before_the_services_start(compose: dict[str, Any]) -> None:
    importers = [
        name for name in compose["services"]
        if any(kind == "bind" and (ROOT / source).resolve() == DEFINITIONS_FILE
               for kind, source, _ in _mounts(compose, name))
    ]
    assert importers, "definitions.json is not mounted anywhere"
    for service, *_ in APP_SERVICES:
        conditions = _depends_on(compose, service)
        assert any(conditions.get(name) == "service_completed_successfully"
                   for name in importers), f"{service} may start before the topology exists"


def test_broker_does_not_import_definitions_at_boot() -> None:
    # A blank node that imports definitions at boot creates no default user, and
    # definitions.json has no administrator and no passwords: every client would be refused.
    settings = [
        line.split("=", 1)[0].strip()
        for line in RABBITMQ_CONF.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert settings, "rabbitmq.conf sets nothing"
    assert not [key for key in settings
                if key.startswith("definitions.") or key.endswith("load_definitions")]


# ---------------------------------------------------------------------------------------
# infra/rabbitmq/definitions.json against broker_messages/topology.py

# aio-pika binds with the queue's name as routing key when none is given, as topology.py
# does for the dead-letter queues; definitions.json must match it or the broker keeps two
# bindings.
EXPECTED_EXCHANGES = {
    topology.EVENTS_EXCHANGE: "topic",
    topology.EVENTS_DEAD_EXCHANGE: "fanout",
    topology.REQUESTS_EXCHANGE: "direct",
    topology.REQUESTS_DEAD_EXCHANGE: "fanout",
    topology.NOTIFIER_EVENTS_EXCHANGE: "topic",
}
EXPECTED_QUEUES = {
    topology.TRIAGE_QUEUE: topology.quorum_arguments(topology.EVENTS_DEAD_EXCHANGE),
    topology.EVENTS_DEAD_QUEUE: {"x-queue-type": "quorum"},
    topology.NOTIFIER_QUEUE: topology.quorum_arguments(topology.REQUESTS_DEAD_EXCHANGE),
    topology.REQUESTS_DEAD_QUEUE: {"x-queue-type": "quorum"},
    topology.TRIAGE_REPLIES_QUEUE: topology.quorum_arguments(topology.REQUESTS_DEAD_EXCHANGE),
}
EXPECTED_BINDINGS = sorted(
    [(topology.EVENTS_EXCHANGE, topology.TRIAGE_QUEUE, key) for key in topology.EVENT_ROUTING_KEYS]
    + [(topology.REQUESTS_EXCHANGE, topology.NOTIFIER_QUEUE, key)
       for key in topology.REQUEST_ROUTING_KEYS]
    + [(topology.NOTIFIER_EVENTS_EXCHANGE, topology.TRIAGE_REPLIES_QUEUE, key)
       for key in topology.NOTIFIER_EVENT_ROUTING_KEYS]
    + [
        (topology.EVENTS_DEAD_EXCHANGE, topology.EVENTS_DEAD_QUEUE, topology.EVENTS_DEAD_QUEUE),
        (topology.REQUESTS_DEAD_EXCHANGE, topology.REQUESTS_DEAD_QUEUE,
         topology.REQUESTS_DEAD_QUEUE),
    ]
)


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    loaded = json.loads(DEFINITIONS_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


class _RecordingChannel:
    """Stands in for an aio-pika channel; keeps what topology.py declares.

    Defaults are aio-pika's: not durable, not auto-delete, no arguments.
    """

    def __init__(self) -> None:
        self.exchanges: dict[str, dict[str, Any]] = {}
        self.queues: dict[str, dict[str, Any]] = {}
        self.bindings: list[tuple[str, str, str]] = []

    async def declare_exchange(self, name: str, type: Any = "direct", *, durable: bool = False,
                               auto_delete: bool = False, internal: bool = False,
                               arguments: dict[str, Any] | None = None, **_: Any) -> str:
        self.exchanges[name] = {
            "type": getattr(type, "value", type), "durable": durable,
            "auto_delete": auto_delete, "internal": internal, "arguments": arguments or {},
        }
        return name

    async def declare_queue(self, name: str, *, durable: bool = False, auto_delete: bool = False,
                            arguments: dict[str, Any] | None = None, **_: Any) -> _RecordedQueue:
        self.queues[name] = {"durable": durable, "auto_delete": auto_delete,
                             "arguments": arguments or {}}
        return _RecordedQueue(self, name)


class _RecordedQueue:
    def __init__(self, channel: _RecordingChannel, name: str) -> None:
        self.channel = channel
        self.name = name

    async def bind(self, exchange: str, routing_key: str | None = None, **_: Any) -> None:
        key = self.name if routing_key is None else routing_key  # aio-pika's default
        self.channel.bindings.append((exchange, self.name, key))


def test_expectations_match_what_topology_declares() -> None:
    # Guards the EXPECTED_* tables above against drifting from topology.py's functions.
    channel = _RecordingChannel()

    async def declare_all() -> None:
        await topology.declare_all(channel)  # type: ignore[arg-type]

    asyncio.run(declare_all())
    assert {name: spec["type"] for name, spec in channel.exchanges.items()} == EXPECTED_EXCHANGES
    assert {name: spec["arguments"] for name, spec in channel.queues.items()} == EXPECTED_QUEUES
    assert sorted(set(channel.bindings)) == EXPECTED_BINDINGS  # re-declaring is idempotent
    assert all(spec["durable"] and not spec["auto_delete"] and not spec["internal"]
               for spec in channel.exchanges.values())
    assert all(spec["durable"] and not spec["auto_delete"] for spec in channel.queues.values())


def test_definitions_hold_only_topology_in_the_root_vhost(definitions: dict[str, Any]) -> None:
    # Users and their permissions but no passwords: credentials stay out of the repository
    # (tests/test_broker_least_privilege.py checks the users against topology.py).
    assert set(definitions) <= {"users", "permissions", "vhosts", "exchanges", "queues",
                                "bindings", "policies"}
    assert all(user.get("password_hash") == "" for user in definitions.get("users") or [])
    assert definitions.get("vhosts") == [{"name": VHOST}]
    for kind in ("permissions", "exchanges", "queues", "bindings", "policies"):
        entries = definitions.get(kind) or []
        assert entries, f"no {kind}"
        assert {entry.get("vhost") for entry in entries} == {VHOST}, kind


def test_definitions_exchanges_match_topology(definitions: dict[str, Any]) -> None:
    exchanges = definitions.get("exchanges") or []
    names = [exchange["name"] for exchange in exchanges]
    assert sorted(names) == sorted(EXPECTED_EXCHANGES), "missing, extra or duplicate exchanges"
    for exchange in exchanges:
        assert exchange.get("type") == EXPECTED_EXCHANGES[exchange["name"]], exchange["name"]
        assert exchange.get("durable") is True, exchange["name"]
        assert exchange.get("auto_delete") is False, exchange["name"]
        assert exchange.get("internal") is False, exchange["name"]
        assert (exchange.get("arguments") or {}) == {}, exchange["name"]


def test_definitions_queues_match_topology(definitions: dict[str, Any]) -> None:
    queues = definitions.get("queues") or []
    names = [queue["name"] for queue in queues]
    assert sorted(names) == sorted(EXPECTED_QUEUES), "missing, extra or duplicate queues"
    for queue in queues:
        # Exact equality, types included: 5 and "5" are different queue arguments.
        assert queue.get("arguments") == EXPECTED_QUEUES[queue["name"]], queue["name"]
        assert queue.get("durable") is True, queue["name"]
        assert queue.get("auto_delete") is False, queue["name"]
    assert topology.DELIVERY_LIMIT in [
        queue["arguments"].get("x-delivery-limit") for queue in queues
    ]


def test_definitions_bindings_match_topology(definitions: dict[str, Any]) -> None:
    bindings = definitions.get("bindings") or []
    for binding in bindings:
        assert binding.get("destination_type") == "queue", binding
        assert (binding.get("arguments") or {}) == {}, binding
    found = sorted((b["source"], b["destination"], b["routing_key"]) for b in bindings)
    assert found == EXPECTED_BINDINGS


# ---------------------------------------------------------------------------------------
# Dockerfile and .dockerignore


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines()
             if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in _dockerfile():
        if keyword == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", rest))
    return env


def test_dockerfile_base_image_and_non_root_user() -> None:
    instructions = _dockerfile()
    assert [rest for keyword, rest in instructions if keyword == "FROM"] == ["python:3.11-slim"]
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_ships_templates_where_templates_dir_points() -> None:
    workdir = "/"
    template_targets = []
    for keyword, rest in _dockerfile():
        if keyword == "WORKDIR":
            workdir = rest
        elif keyword == "COPY":
            *sources, target = [part for part in rest.split() if not part.startswith("--")]
            if any(source.rstrip("/") == "templates" for source in sources):
                template_targets.append(str(Path(workdir, target.rstrip("/"))))
    assert template_targets, "templates/ is not copied into the image"
    assert _dockerfile_env().get("TEMPLATES_DIR") in template_targets
    assert (ROOT / "templates").is_dir()


def test_dockerfile_installs_the_lock_file_then_the_project_without_deps() -> None:
    runs = [rest for keyword, rest in _dockerfile() if keyword == "RUN"]
    copied = " ".join(rest for keyword, rest in _dockerfile() if keyword == "COPY")
    for name in ("pyproject.toml", "requirements.lock", "services"):
        assert name in copied, f"{name} is not copied"
    locked = [i for i, run in enumerate(runs)
              if re.search(r"pip install .*-r requirements\.lock", run)]
    project = [i for i, run in enumerate(runs) if re.search(r"pip install .*--no-deps \.", run)]
    assert locked and project and locked[0] < project[0]


def test_dockerfile_defaults() -> None:
    env = _dockerfile_env()
    assert env.get("OUTBOX_DIR") == "/app/var/outbox"
    cmd = [rest for keyword, rest in _dockerfile() if keyword == "CMD"]
    assert cmd and json.loads(cmd[-1]) == ["python", "-m", "triage"]


def test_dockerignore_keeps_local_state_out_but_not_the_sources() -> None:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for required in (".venv", "var", ".git", ".pytest_cache", "bench/out"):
        assert required in patterns, f"{required} is not ignored"
    assert "__pycache__" in patterns or "**/__pycache__" in patterns
    for needed in ("pyproject.toml", "requirements.lock", "services", "templates"):
        assert not any(fnmatch.fnmatch(needed, pattern) for pattern in patterns), needed


# ---------------------------------------------------------------------------------------
# Lock files: the image and `make run` get the runtime lock only

RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
MAKEFILE = ROOT / "Makefile"
DEV_TOOLS = ("pytest", "pytest-asyncio", "pytest-timeout", "mypy", "ruff", "hypothesis",
             "schemathesis", "py-spy", "import-linter", "pip-tools", "aiosmtpd")


def _pins(lock: Path) -> dict[str, str]:
    """{normalised name: version}, asserting every pin carries a hash."""
    text = re.sub(r"\\\n", " ", lock.read_text())
    pins = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            found = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
            assert found, f"{lock.name}: not an exact pin: {line.strip()[:60]}"
            assert "--hash=sha256:" in line, f"{lock.name}: {found.group(1)} has no hash"
            pins[re.sub(r"[-_.]+", "-", found.group(1)).lower()] = found.group(2)
    return pins


def test_runtime_lock_holds_no_test_or_lint_tool() -> None:
    runtime = _pins(RUNTIME_LOCK)
    assert {"fastapi", "aio-pika", "sqlalchemy", "twilio"} <= runtime.keys()
    assert not runtime.keys() & set(DEV_TOOLS)


def test_dev_lock_adds_the_tools_at_the_runtime_versions() -> None:
    runtime, dev = _pins(RUNTIME_LOCK), _pins(DEV_LOCK)
    assert set(DEV_TOOLS) <= dev.keys()
    assert {name: dev.get(name) for name in runtime} == runtime


def test_private_interface_packages_have_an_upper_bound_the_lock_satisfies() -> None:
    """servicekit's SQLite driver and consumer use private parts of these: a new minor
    release must be a deliberate change (servicekit/sqlite_driver.py, servicekit/consumer.py)."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    runtime = _pins(RUNTIME_LOCK)
    for name in ("sqlalchemy", "aiosqlite", "aio-pika", "aiormq"):
        bound = re.search(rf'"{name}(?:\[\w+\])?>=([\d.]+),<([\d.]+)"', pyproject, re.IGNORECASE)
        assert bound, f"{name} has no upper bound in pyproject.toml"
        low, high = (tuple(int(p) for p in v.split(".")) for v in bound.groups())
        locked = tuple(int(p) for p in runtime[name].split("."))
        assert low <= locked < high, f"{name} {runtime[name]} is outside {bound.group(0)}"


def test_image_installs_the_runtime_lock_with_hashes_and_never_the_dev_lock() -> None:
    runs = " ".join(rest for keyword, rest in _dockerfile() if keyword == "RUN")
    copied = " ".join(rest for keyword, rest in _dockerfile() if keyword == "COPY")
    assert re.search(r"pip install .*--require-hashes -r requirements\.lock", runs)
    assert "requirements-dev" not in runs + copied
    assert not any(re.search(rf"\b{re.escape(tool)}\b", runs) for tool in DEV_TOOLS)


def _make_dry_run(target: str) -> str:
    return subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


def test_make_run_installs_runtime_only_and_make_test_adds_the_dev_lock() -> None:
    run = _make_dry_run("run")
    assert "--require-hashes -r requirements.lock" in run
    assert "requirements-dev.lock" not in run
    for target in ("test", "lint", "bench"):
        assert "--require-hashes -r requirements-dev.lock" in _make_dry_run(target), target


def test_ci_runs_the_lint_gates_then_the_tests() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("make lint") < ci.index("make test\n") < ci.index("make test-cluster\n")
    lint = _make_dry_run("lint")
    for gate in ("ruff check services tests scripts bench", "mypy", "lint-imports"):
        assert gate in lint, gate


# ---------------------------------------------------------------------------------------
# docs/deployment.md


def test_the_deployment_guide_names_only_files_that_exist() -> None:
    guide = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:infra/|docker-compose)[\w./-]*)`", guide))
    named |= {f"infra/kubernetes/{name}"
              for name in re.findall(r"`([\w.-]+\.yaml)`", guide) if "/" not in name}
    assert {"docker-compose.yml", "docker-compose.cluster.yml",
            "infra/kubernetes/"} <= named
    for path in named:
        assert (ROOT / path).exists(), f"docs/deployment.md names {path}, which does not exist"
    linked = [path.name for path in (ROOT / "infra" / "kubernetes").glob("*.yaml")]
    assert all(f"`{name}`" in guide for name in linked), "a manifest the guide does not describe"
