"""The Kubernetes manifests (server_config/k8s): rendered by kustomize, every object valid
against Kubernetes 1.31's schema, and the objects agree with each other: services select pods
that exist and open the ports they name, the autoscaler targets the Triton Deployment through
the metric the prometheus-adapter rule makes, probes hit declared ports, volumes exist."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "server_config" / "k8s"
KUBERNETES = "1.31.0"
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def _kustomize() -> str:
    found = Path(sys.executable).with_name("kustomize")  # make setup installs it beside python
    return str(found) if found.exists() else shutil.which("kustomize") or "kustomize"


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    rendered = subprocess.run(
        [_kustomize(), "build", str(K8S)], capture_output=True, text=True, check=True
    )
    return [o for o in yaml.safe_load_all(rendered.stdout) if o]


def _named(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"one {kind} {name}, found {len(found)}"
    return found[0]


def _pod(workload: dict) -> dict:
    return workload["spec"]["template"]


def _containers(objects: list[dict]) -> Iterator[tuple[dict, dict]]:
    for workload in (o for o in objects if o["kind"] in WORKLOADS):
        for container in _pod(workload)["spec"]["containers"]:
            yield workload, container


def _port(container: dict, port: int | str) -> int:
    """A container port by name or number; fails if the container does not declare it."""
    for declared in container.get("ports", []):
        if port in (declared.get("name"), declared["containerPort"]):
            return declared["containerPort"]
    raise AssertionError(f"{container['name']} declares no port {port!r}")


def _arg(container: dict, flag: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in container["args"] if a.startswith(f"{flag}=")]
    return value


def test_every_rendered_object_is_valid_against_the_kubernetes_schema(objects):
    kinds = sorted(o["kind"] for o in objects)
    assert {"Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler", "Job"} <= set(kinds)
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {exc.message}")
        assert obj["kind"] == "Namespace" or obj["metadata"]["namespace"] == "logad"


def test_each_service_selects_a_workload_whose_containers_open_its_ports(objects):
    for service in (o for o in objects if o["kind"] == "Service"):
        selector = service["spec"]["selector"]
        selected = [
            w
            for w in objects
            if w["kind"] in WORKLOADS and selector.items() <= _pod(w)["metadata"]["labels"].items()
        ]
        assert selected, f"service {service['metadata']['name']} selects no pods"
        for port in service["spec"]["ports"]:
            for workload in selected:
                (container,) = _pod(workload)["spec"]["containers"]
                _port(container, port["targetPort"])
    nats = _named(objects, "StatefulSet", "nats")
    assert _named(objects, "Service", nats["spec"]["serviceName"])["spec"]["clusterIP"] == "None"


def test_every_probe_hits_a_port_its_container_opens(objects):
    probes = 0
    for _, container in _containers(objects):
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in container:
                _port(container, container[kind]["httpGet"]["port"])
                probes += 1
    assert probes >= 7


def test_triton_runs_on_gpu_nodes_with_explicit_model_control_and_health_probes(objects):
    triton = _named(objects, "Deployment", "triton")
    (container,) = _pod(triton)["spec"]["containers"]
    assert container["image"].startswith("nvcr.io/nvidia/tritonserver:")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "--model-control-mode=explicit" in container["args"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/models" and mount["readOnly"]
    assert _named(objects, "Service", "triton")["spec"]["clusterIP"] == "None"  # headless


def test_the_autoscaler_targets_triton_on_the_metric_the_adapter_rule_makes(objects):
    hpa = _named(objects, "HorizontalPodAutoscaler", "triton")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "triton")
    (metric,) = hpa["spec"]["metrics"]
    rules = yaml.safe_load(
        _named(objects, "ConfigMap", "prometheus-adapter-rules")["data"]["config.yaml"]
    )
    (rule,) = rules["rules"]
    assert rule["name"]["as"] == metric["pods"]["metric"]["name"]
    # Triton's own series, as the k8s-onprem chart's rule reads them.
    assert "nv_inference_queue_duration_us" in rule["metricsQuery"]
    assert "nv_inference_request_success" in rule["metricsQuery"]


def test_workers_and_the_retrain_job_reach_triton_and_nats_by_their_services(objects):
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}

    def service_port(host: str, port: int) -> None:
        assert host in services, f"no service {host}"
        assert port in [p["port"] for p in services[host]["spec"]["ports"]]

    worker = _named(objects, "Deployment", "logad-worker")
    retrain = _named(objects, "Job", "logad-retrain")
    for workload in (worker, retrain):
        (container,) = _pod(workload)["spec"]["containers"]
        url = urlparse(_arg(container, "--url"))  # dns:///triton:8001
        host, port = url.path.lstrip("/").split(":")
        service_port(host, int(port))
    (container,) = _pod(worker)["spec"]["containers"]
    source = urlparse(_arg(container, "--source"))
    service_port(source.hostname, source.port)
    assert _port(container, int(_arg(container, "--metrics-port")))


def test_every_volume_claim_a_pod_mounts_is_declared(objects):
    claims = {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    for workload, container in _containers(objects):
        volumes = {v["name"]: v for v in _pod(workload)["spec"].get("volumes", [])}
        templates = {
            t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])
        }
        for mount in container.get("volumeMounts", []):
            if mount["name"] in templates:
                continue
            volume = volumes[mount["name"]]
            assert volume["persistentVolumeClaim"]["claimName"] in claims
