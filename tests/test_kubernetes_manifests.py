"""infra/kubernetes/ is valid for Kubernetes and agrees with the code, the contract and itself.

No cluster is available to the tests, so the manifests are checked offline: each Kubernetes
resource against the schemas kubernetes-validate bundles for a pinned version (strict: an
unknown field, such as a misspelt one, fails), KEDA's resources against the minimal schema in
tests/schemas/keda.json (KEDA ships its CRDs in no package this project can install, so that
schema covers only the fields these manifests use, as KEDA's CRDs define them). Then the
cross-references a cluster would only reveal at run time: Secret and ConfigMap keys, setting
names, probe routes, selectors and ports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml
from broker_messages import topology
from notifier.app import NotifierService
from notifier.app import create_app as notifier_app
from pydantic_settings import BaseSettings
from staff.app import build as build_staff
from staff.app import create_app as staff_app
from staff.settings import StaffSettings
from triage.app import TriageService
from triage.app import create_app as triage_app

from bench import report
from tests.contract_settings import SETTINGS, STRONG_SECRET, allowed_settings, every_setting

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "infra" / "kubernetes"
EXAMPLE_SECRET = MANIFESTS / "secret.example.yaml"
KEDA_SCHEMA = Path(__file__).resolve().parent / "schemas" / "keda.json"
DOCKERFILE = ROOT / "Dockerfile"

# The oldest Kubernetes minor version the manifests must be valid for.
KUBERNETES_VERSION = "1.33.0"
NAMESPACE = "absence-followup"
SERVICES = ["triage", "notifier", "staff"]
# Names that hold credentials: they may come only from a Secret.
SECRET_NAME = re.compile(r"TOKEN|KEY|PASSWORD|SECRET|SID|AMQP_URL|DATABASE_URL")


def _load(path: Path) -> list[dict[str, Any]]:
    documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    assert all(isinstance(doc, dict) for doc in documents), path.name
    return documents


def _resources() -> list[tuple[str, dict[str, Any]]]:
    """(file name, resource) for every resource the kustomization applies."""
    return [(path.name, doc)
            for path in sorted(MANIFESTS.glob("*.yaml"))
            if path.name not in ("kustomization.yaml", EXAMPLE_SECRET.name)
            for doc in _load(path)]


RESOURCES = _resources()
EXAMPLE_SECRETS = _load(EXAMPLE_SECRET)


def _named(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in RESOURCES if doc["kind"] == kind}


def _container(service: str) -> dict[str, Any]:
    containers = _named("Deployment")[service]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, service
    container: dict[str, Any] = containers[0]
    return container


def _config_maps_of(service: str) -> list[dict[str, Any]]:
    config_maps = _named("ConfigMap")
    return [config_maps[source["configMapRef"]["name"]]
            for source in _container(service).get("envFrom") or []]


def _env_names(service: str) -> list[str]:
    """Every variable the container gets: the ConfigMaps' keys and its own env entries."""
    from_maps = [key for config_map in _config_maps_of(service) for key in config_map["data"]]
    return from_maps + [entry["name"] for entry in _container(service).get("env") or []]


def _secret_keys() -> dict[str, set[str]]:
    return {doc["metadata"]["name"]: set(doc["stringData"]) for doc in EXAMPLE_SECRETS}


def _secret_refs() -> Iterator[tuple[str, str, str]]:
    """(where, Secret name, key) for every reference to a Secret in the manifests."""
    for service in SERVICES:
        for entry in _container(service).get("env") or []:
            ref = entry["valueFrom"]["secretKeyRef"]
            yield f"{service} {entry['name']}", ref["name"], ref["key"]
    for name, auth in _named("TriggerAuthentication").items():
        for ref in auth["spec"]["secretTargetRef"]:
            yield f"TriggerAuthentication {name}", ref["name"], ref["key"]


# ---------------------------------------------------------------------------------------
# Schemas


def test_the_kustomization_applies_every_manifest_but_the_example_secret() -> None:
    kustomization = _load(MANIFESTS / "kustomization.yaml")[0]
    files = {path.name for path in MANIFESTS.glob("*.yaml")}
    assert set(kustomization["resources"]) == files - {"kustomization.yaml", EXAMPLE_SECRET.name}
    assert kustomization["namespace"] == NAMESPACE
    assert {doc["metadata"].get("namespace") for _, doc in RESOURCES
            if doc["kind"] != "Namespace"} == {NAMESPACE}


@pytest.mark.parametrize(
    "resource",
    [doc for _, doc in RESOURCES if not doc["apiVersion"].startswith("keda.sh/")] + EXAMPLE_SECRETS,
    ids=lambda doc: f"{doc['kind']}/{doc['metadata']['name']}",
)
def test_each_resource_is_valid_for_the_pinned_kubernetes_version(resource: dict[str, Any]) -> None:
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_an_unknown_field() -> None:
    # Guards the test above: a misspelt field must fail, not pass as an extra property.
    deployment = json.loads(json.dumps(_named("Deployment")["triage"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("kind", ["ScaledObject", "TriggerAuthentication"])
def test_keda_resources_match_keda_schema(kind: str) -> None:
    # The file's own definitions ($defs) resolve when the kind is referenced from its root.
    schema = json.loads(KEDA_SCHEMA.read_text(encoding="utf-8")) | {"$ref": f"#/{kind}"}
    resources = list(_named(kind).values())
    assert resources, f"no {kind}"
    for resource in resources:
        assert resource["apiVersion"] == "keda.sh/v1alpha1"
        jsonschema.validate(resource, schema)
        misspelt = json.loads(json.dumps(resource))
        misspelt["spec"]["minReplicas"] = 1
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(misspelt, schema)


# ---------------------------------------------------------------------------------------
# Secrets and settings


def test_every_secret_reference_names_a_key_of_the_example_secrets() -> None:
    keys = _secret_keys()
    referenced = set()
    for where, name, key in _secret_refs():
        assert key in keys.get(name, set()), f"{where}: no key {key!r} in Secret {name!r}"
        referenced.add((name, key))
    unused = {(name, key) for name, names in keys.items() for key in names} - referenced
    assert not unused, f"keys of the example Secrets nothing reads: {sorted(unused)}"


def test_the_example_secrets_hold_only_placeholders() -> None:
    for secret in EXAMPLE_SECRETS:
        assert "EXAMPLE ONLY" in EXAMPLE_SECRET.read_text(encoding="utf-8")
        for key, value in secret["stringData"].items():
            assert "REPLACE" in value, f"{secret['metadata']['name']}.{key} is not a placeholder"


@pytest.mark.parametrize("service", SERVICES)
def test_credentials_come_only_from_secrets(service: str) -> None:
    for entry in _container(service).get("env") or []:
        assert set(entry) == {"name", "valueFrom"}, f"{entry['name']} has a literal value"
        assert "secretKeyRef" in entry["valueFrom"], entry["name"]
    for config_map in _config_maps_of(service):
        secret_like = [key for key in config_map["data"] if SECRET_NAME.search(key)]
        assert not secret_like, f"{config_map['metadata']['name']} holds {secret_like}"


@pytest.mark.parametrize("service", SERVICES)
def test_every_variable_is_a_documented_setting_of_that_service(service: str) -> None:
    names = _env_names(service)
    assert len(names) == len(set(names)), f"{service}: a variable is set twice"
    unknown = set(names) - allowed_settings(service)
    assert not unknown, f"{service}: not settings of this service in docs/contract.md §1"


@pytest.mark.parametrize("service", SERVICES)
def test_the_service_accepts_the_configuration(
        service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings class reads the manifests' values, with each Secret's placeholders
    replaced by a strong value (a listening service refuses weak tokens)."""
    for name in every_setting():
        monkeypatch.delenv(name, raising=False)
    example = {doc["metadata"]["name"]: doc["stringData"] for doc in EXAMPLE_SECRETS}
    for config_map in _config_maps_of(service):
        for key, value in config_map["data"].items():
            monkeypatch.setenv(key, value)
    for entry in _container(service).get("env") or []:
        ref = entry["valueFrom"]["secretKeyRef"]
        value = example[ref["name"]][ref["key"]].replace("REPLACE", STRONG_SECRET)
        monkeypatch.setenv(entry["name"], value)
    SETTINGS[service](_env_file=None)  # type: ignore[call-arg]


# ---------------------------------------------------------------------------------------
# Deployments, Services, PodDisruptionBudgets


def _settings_for_routes(service: str, tmp_path: Path) -> BaseSettings:
    database = f"sqlite+aiosqlite:///{tmp_path}/{service}.db"
    if service == "staff":
        return StaffSettings(database_url=database, api_token="t" * 30)  # type: ignore[arg-type]
    return SETTINGS[service](database_url=database)


async def _answers(service: str, paths: set[str], tmp_path: Path) -> dict[str, int]:
    """{path: status} from the service's app, built as `python -m <service>` builds it (its
    broker and background loops not started: /readyz then answers 503, not 404)."""
    settings = _settings_for_routes(service, tmp_path)
    if service == "triage":
        built: Any = TriageService(settings)  # type: ignore[arg-type]
        app = triage_app(built)
    elif service == "notifier":
        built = NotifierService(settings)  # type: ignore[arg-type]
        app = notifier_app(built)
    else:
        built = build_staff(settings)  # type: ignore[arg-type]
        app = staff_app(built)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://probe.test") as client:
            return {path: (await client.get(path)).status_code for path in paths}
    finally:
        await built.engine.dispose()


@pytest.mark.parametrize("service", SERVICES)
async def test_probes_point_at_real_routes_on_the_service_port(
        service: str, tmp_path: Path) -> None:
    container = _container(service)
    assert container["command"] == ["python", "-m", service]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    configured = {key: value for config_map in _config_maps_of(service)
                  for key, value in config_map["data"].items()}
    assert ports == {"http": int(configured[f"{service.upper()}_PORT"])}
    assert configured[f"{service.upper()}_HOST"] == "0.0.0.0"
    probes = {kind: container[kind]["httpGet"]
              for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    answers = await _answers(service, {"/healthz", "/readyz"}, tmp_path)
    assert answers["/healthz"] == 200
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["startupProbe"]["path"] == "/healthz"
    # /readyz where the service has one (the staff app has none: it holds no broker).
    expected_ready = "/healthz" if answers["/readyz"] == 404 else "/readyz"
    assert probes["readinessProbe"]["path"] == expected_ready
    assert (service == "staff") == (expected_ready == "/healthz")
    for kind, probe in probes.items():
        assert probe["port"] in ports, f"{service} {kind}: no port {probe['port']}"


@pytest.mark.parametrize("service", SERVICES)
def test_selectors_match_the_pods(service: str) -> None:
    deployment = _named("Deployment")[service]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": deployment["spec"]["selector"]["matchLabels"],
        "Service": _named("Service")[service]["spec"]["selector"],
        "PodDisruptionBudget":
            _named("PodDisruptionBudget")[service]["spec"]["selector"]["matchLabels"],
    }
    for kind, selector in selectors.items():
        assert selector and selector.items() <= pod_labels.items(), f"{kind} {service}"
    other_pods = [_named("Deployment")[other]["spec"]["template"]["metadata"]["labels"]
                  for other in SERVICES if other != service]
    assert not any(selectors["Service"].items() <= labels.items() for labels in other_pods)


@pytest.mark.parametrize("service", SERVICES)
def test_the_service_reaches_the_container_port(service: str) -> None:
    ports = _named("Service")[service]["spec"]["ports"]
    named = {port["name"] for port in _container(service)["ports"]}
    assert [port["targetPort"] for port in ports] == ["http"]
    assert named == {"http"}
    assert ports[0]["port"] == _container(service)["ports"][0]["containerPort"]


@pytest.mark.parametrize("service", SERVICES)
def test_a_disruption_never_takes_every_pod(service: str) -> None:
    budget = _named("PodDisruptionBudget")[service]["spec"]
    replicas = _named("Deployment")[service]["spec"].get("replicas")
    if service == "triage":  # KEDA owns the count
        replicas = _named("ScaledObject")["triage"]["spec"]["minReplicaCount"]
    assert replicas is not None and replicas >= 2, f"{service}: one pod is a single point"
    assert budget.get("maxUnavailable", replicas - budget.get("minAvailable", 0)) < replicas


def _image_uid() -> int:
    found = re.search(r"useradd [^\n]*--uid (\d+)", DOCKERFILE.read_text())
    assert found, "the Dockerfile creates no user"
    return int(found.group(1))


@pytest.mark.parametrize("service", SERVICES)
def test_pods_run_as_the_image_user_on_a_read_only_root(service: str) -> None:
    pod = _named("Deployment")[service]["spec"]["template"]["spec"]
    container = _container(service)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == _image_uid()
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for mount in container["volumeMounts"]:
        assert "emptyDir" in volumes[mount["name"]], "only scratch space is writable"


def _mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def _bench_peak_rss_mb() -> dict[str, int]:
    """Peak RSS at full size (1x) from bench/results.md's full run, and triage's on the 190th
    morning of a year from the full year-on run when there is one: the larger sizes triage."""
    full = report.section("full")
    found = full and re.search(r"peak RSS at 1x: triage / notifier \| (\d+) MB / (\d+) MB", full)
    assert found, "bench/results.md has no full-size peak RSS"
    peaks = {"triage": int(found.group(1)), "notifier": int(found.group(2))}
    if (year := report.section("a-year-on:full")) is not None:
        on_day_190 = re.search(r"peak RSS of `python -m triage` on the day-190 database \| "
                               r"(\d+) MB", year)
        assert on_day_190, "bench/results.md's year-on run has no peak RSS"
        peaks["triage"] = max(peaks["triage"], int(on_day_190.group(1)))
    return peaks


@pytest.mark.parametrize("service", SERVICES)
def test_memory_is_sized_from_the_benchmark(service: str) -> None:
    resources = _container(service)["resources"]
    request = _mebibytes(resources["requests"]["memory"])
    limit = _mebibytes(resources["limits"]["memory"])
    # The staff app's memory is not benchmarked: sized as the notifier (the comment says why).
    peak = _bench_peak_rss_mb()["notifier" if service == "staff" else service]
    assert request >= peak * 1.2, f"{service}: request {request} Mi, measured peak {peak} MB"
    assert limit >= 2 * peak and limit >= request
    assert resources["requests"]["cpu"] and resources["limits"]["cpu"]


# ---------------------------------------------------------------------------------------
# Autoscaling of triage on the events queue


def test_triage_scales_on_its_events_queue() -> None:
    scaled = _named("ScaledObject")["triage"]["spec"]
    assert scaled["scaleTargetRef"]["name"] in _named("Deployment")
    assert scaled["scaleTargetRef"]["name"] == "triage"
    assert scaled["minReplicaCount"] >= 2 and scaled["maxReplicaCount"] > scaled[
        "minReplicaCount"]
    [trigger] = scaled["triggers"]
    assert trigger["type"] == "rabbitmq"
    metadata = trigger["metadata"]
    assert metadata["queueName"] == topology.TRIAGE_QUEUE
    assert metadata["mode"] in ("QueueLength", "MessageRate")
    assert metadata["protocol"] in ("amqp", "http", "auto")
    assert int(metadata["value"]) > 0
    assert "host" not in metadata, "the broker address carries a password: use the Secret"
    assert trigger["authenticationRef"]["name"] in _named("TriggerAuthentication")
    parameters = {ref["parameter"] for ref in _named("TriggerAuthentication")[
        trigger["authenticationRef"]["name"]]["spec"]["secretTargetRef"]}
    assert parameters == {"host"}
