"""The deployment files an operator takes to production: the Kubernetes manifests validate against
the Kubernetes JSON Schemas (kubernetes-validate, strict: an unknown field fails) and have what a
rollout needs; docker compose and the manifests pass every setting each service reads."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the oldest release we support; the schemas ship with the package
SERVICES = ("orders", "ledger", "payments", "notifications", "web")
# Kinds of the operators we depend on: no schema in the Kubernetes set, checked below by hand.
OPERATOR_KINDS = {("rabbitmq.com/v1beta1", "RabbitmqCluster"), ("kustomize.config.k8s.io/v1beta1", "Kustomization")}
SETTINGS_CLASSES = {
    "orders": "cagette_runtime.settings:ServiceSettings",
    "ledger": "cagette_ledger.settings:LedgerSettings",
    "payments": "cagette_payments.settings:PaymentsSettings",
    "notifications": "cagette_notifications.settings:NotificationSettings",
    "web": "cagette_web.settings:WebSettings",
}


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifests() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, doc) for path in sorted(K8S.glob("*.yaml")) for doc in documents(path)]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


def required_settings(service: str) -> set[str] | None:
    """The environment variables of every setting the service reads that has a value by default
    (a None default means "off while unset"); None when the service is not installed here."""
    module, _, name = SETTINGS_CLASSES[service].partition(":")
    try:
        cls: type[BaseSettings] = getattr(importlib.import_module(module), name)
    except ModuleNotFoundError:
        return None
    prefix = str(cls.model_config.get("env_prefix", ""))
    return {
        f"{prefix}{field}".upper()
        for field, info in cls.model_fields.items()
        if field != "service_name" and info.default is not None
    }


@pytest.mark.parametrize(("file", "doc"), manifests(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_each_manifest_is_valid_kubernetes(file: str, doc: dict[str, Any]) -> None:
    if (doc["apiVersion"], doc["kind"]) in OPERATOR_KINDS:
        return
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_a_broken_manifest() -> None:
    deployment = by_kind("Deployment")["ledger"]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_applies_every_manifest_but_the_secret_examples() -> None:
    [kustomization] = documents(K8S / "kustomization.yaml")
    expected = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secrets.example.yaml"}
    assert set(kustomization["resources"]) == expected


def test_every_service_rolls_out_safely() -> None:
    deployments, budgets, jobs = by_kind("Deployment"), by_kind("PodDisruptionBudget"), by_kind("Job")
    settings = by_kind("ConfigMap")["cagette-settings"]["data"]
    assert settings["CAGETTE_MIGRATE_ON_START"] == "false"
    assert float(settings["CAGETTE_SHUTDOWN_DRAIN_SECONDS"]) > 0
    for service in SERVICES:
        pod = deployments[service]["spec"]["template"]
        [container] = pod["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        assert deployments[service]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        drain = float(settings["CAGETTE_SHUTDOWN_DRAIN_SECONDS"])
        assert pod["spec"]["terminationGracePeriodSeconds"] > drain
        assert budgets[service]["spec"]["minAvailable"] == 1
        [migrate] = jobs[f"{service}-migrate"]["spec"]["template"]["spec"]["containers"]
        assert migrate["args"] == ["python", "-m", f"cagette_{service}", "migrate"]


def test_rabbitmq_is_a_three_node_cluster_for_quorum_queues() -> None:
    [cluster] = [doc for _, doc in manifests() if doc["kind"] == "RabbitmqCluster"]
    assert cluster["spec"]["replicas"] == 3
    assert set(cluster) == {"apiVersion", "kind", "metadata", "spec"}


@pytest.mark.parametrize("service", SERVICES)
def test_the_manifests_pass_every_setting_the_service_reads(service: str) -> None:
    required = required_settings(service)
    if required is None:
        pytest.skip(f"cagette_{service} is not installed in this environment")
    [container] = by_kind("Deployment")[service]["spec"]["template"]["spec"]["containers"]
    passed = set(by_kind("ConfigMap")["cagette-settings"]["data"]) | {env["name"] for env in container["env"]}
    assert required - passed == set()


@pytest.mark.parametrize("service", SERVICES)
def test_docker_compose_passes_every_setting_the_service_reads(service: str) -> None:
    required = required_settings(service)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    if required is None or service not in compose["services"]:
        pytest.skip(f"cagette_{service} is not installed here or not in docker-compose.yml")
    passed = set(compose["services"][service]["environment"])
    assert required - passed == set()


def test_the_env_example_documents_every_variable_compose_reads() -> None:
    import re

    read: set[str] = set()
    for name in ("docker-compose.yml", "docker-compose.prod.yml"):
        lines = (ROOT / name).read_text().splitlines()
        read |= {
            v for line in lines if not line.lstrip().startswith("#") for v in re.findall(r"\$\{([A-Z0-9_]+)", line)
        }
    documented = {
        line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines() if "=" in line[:60]
    }
    assert read - documented == set()
