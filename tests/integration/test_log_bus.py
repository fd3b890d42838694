"""The log bus for real: Debian's nats-server with JetStream, ``publish`` placing each session
on one partition, ``detect --source`` workers sharing the partitions, a worker SIGKILLed
mid-stream whose lines another worker takes over, and every session's verdict there once."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import yaml

from client.formats import builtin
from client.log_bus import Bus, BusAddress, BusLayout, LinePublisher, unpack
from client.ops.workload import WorkloadConfig, generate_workload
from client.pipeline import StreamConfig, detect_stream
from client.sources import Record
from server_config.launcher import free_ports
from server_config.services import NatsServer, PrometheusServer

PROJECT_ROOT = Path(__file__).resolve().parents[2]
K8S = PROJECT_ROOT / "server_config" / "k8s"
DASHBOARD = PROJECT_ROOT / "server_config" / "grafana" / "logad-dashboard.json"
HDFS = builtin("hdfs")
PARTITIONS = 6
# Every line at one time: sessions then end only when the bus goes quiet (after --session-idle
# seconds of the wall clock), as they end at the end of the file in the clean run, whichever
# worker reads them and whenever a partition is taken over.
_TIME = re.compile(rb"^\d{6} \d{6}")


def _one_time(lines: list[bytes]) -> list[bytes]:
    return [_TIME.sub(b"081109 203615", line, count=1) for line in lines]


LOG = _one_time(generate_workload(WorkloadConfig(blocks=600, anomaly_rate=0.06, seed=43)).lines)


@pytest.fixture(scope="module")
def nats(tmp_path_factory):
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    pid = server.pid
    yield server
    server.stop()
    assert not server.is_running() and pid is not None


@pytest.fixture(scope="module")
def clean(workload_model) -> dict[str, tuple[bool, int]]:
    """Each session's verdict (abnormal, keys) when the log is read as one file."""
    found = {}
    detect_stream(
        LOG,
        workload_model,
        lambda _: None,
        on_verdict=lambda v: found.update({v.session: (v.abnormal, v.keys)}),
        config=StreamConfig(session_idle_s=3.0),
    )
    return found


def _publish(url: str, lines: list[bytes]) -> None:
    bus = Bus(BusAddress.parse(url))
    layout = bus.ensure_streams(BusLayout(PARTITIONS, HDFS.name, HDFS.digest))
    publisher = LinePublisher(bus, layout, HDFS)
    for n, raw in enumerate(lines, start=1):
        publisher.add(Record(raw, n, 0, 0))
    publisher.flush()
    bus.close()


def _stream_messages(url: str, stream: str) -> list:
    bus = Bus(BusAddress.parse(url))
    try:
        return bus.messages(stream)
    finally:
        bus.close()


def _worker(nats: NatsServer, server, model, stream: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable, "-m", "client", "detect",
            "--source", f"{nats.url}/{stream}",
            "--url", server.grpc_url,
            "--no-asgnet", "--version", str(model.meta.version),
            "--partitions", str(PARTITIONS),
            "--session-idle", "3", "--ack-wait", "4", "--lease", "3",
            "--no-store", "--quiet", "--metrics-port", "0", *args,
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip


def _verdicts(nats: NatsServer, stream: str) -> list[dict]:
    return [json.loads(m.data) for m in _stream_messages(nats.url, f"{stream}_findings")
            if m.subject.endswith(".verdicts")]  # fmt: skip


def _await_verdicts(nats, stream: str, expected: int, workers, timeout: float = 150) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        verdicts = _verdicts(nats, stream)
        if len({v["session"] for v in verdicts}) >= expected:
            return verdicts
        for worker in workers:
            if worker.poll() not in (None, -signal.SIGKILL):
                pytest.fail(f"a worker exited: {worker.stderr.read().decode()}")
        time.sleep(1)
    return _verdicts(nats, stream)


def _stop(workers) -> list[str]:
    errors = []
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
        errors.append(err.decode())
        assert worker.returncode in (0, -signal.SIGKILL), err.decode()
    return errors


def test_a_session_s_lines_all_go_to_one_partition_and_every_line_travels(nats):
    _publish(f"{nats.url}/placed", LOG)
    partitions_of = defaultdict(set)
    lines = 0
    for msg in _stream_messages(nats.url, "placed"):
        partition = int(msg.subject.rsplit(".", 1)[1])
        for _, sessions in unpack(msg.data, msg.headers, msg.metadata.sequence.stream):
            lines += 1
            for session in sessions:
                partitions_of[session].add(partition)
    assert all(len(p) == 1 for p in partitions_of.values())
    assert len({next(iter(p)) for p in partitions_of.values()}) == PARTITIONS
    assert set(partitions_of) >= {b for b in generate_workload(WorkloadConfig(600, 0.06, 43)).truth}
    assert lines >= len(LOG)  # lines naming blocks of several partitions go to each


def test_two_workers_share_the_partitions_and_emit_every_verdict_once(
    nats, server, workload_model, clean
):
    workers = [_worker(nats, server, workload_model, "shared") for _ in range(2)]
    time.sleep(3)  # both registered before the lines come
    _publish(f"{nats.url}/shared", LOG)
    verdicts = _await_verdicts(nats, "shared", len(clean), workers)
    errors = _stop(workers)
    assert {v["session"]: (v["abnormal"], v["keys"]) for v in verdicts} == clean
    assert max(Counter(v["session"] for v in verdicts).values()) == 1
    held = [re.search(r"\((\d+) partitions", e) for e in errors]
    assert all(held), errors


def test_a_killed_worker_s_partitions_are_taken_over_and_no_verdict_is_lost(
    nats, server, workload_model, clean
):
    workers = [_worker(nats, server, workload_model, "killed") for _ in range(2)]
    time.sleep(3)
    half = len(LOG) // 2
    _publish(f"{nats.url}/killed", LOG[:half])
    time.sleep(1.0)  # the first worker is in the middle of its sessions
    workers[0].send_signal(signal.SIGKILL)
    _publish(f"{nats.url}/killed", LOG[half:])
    verdicts = _await_verdicts(nats, "killed", len(clean), workers)
    errors = _stop(workers)
    # JetStream kept each verdict once (by its id) even where the survivor found one again.
    assert len(verdicts) == len({v["id"] for v in verdicts})
    assert {v["session"]: (v["abnormal"], v["keys"]) for v in verdicts} == clean, errors[1]
    print(errors[1])
    assert "redelivered" in errors[1] and not re.search(r"\(0 redelivered\)", errors[1])


def _query(prometheus: PrometheusServer, expr: str) -> list:
    url = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_prometheus_scrapes_triton_and_a_worker_and_has_every_series_the_hpa_and_dashboard_use(
    nats, server, workload_model, tmp_path
):
    metrics_port = free_ports(1)[0]
    watched = _worker(nats, server, workload_model, "watched", "--metrics-port", str(metrics_port))
    targets = {
        "triton": [f"127.0.0.1:{server.ports.metrics}"],
        "workers": [f"127.0.0.1:{metrics_port}"],
    }
    with PrometheusServer(targets, tmp_path / "prometheus") as prometheus:
        _publish(f"{nats.url}/watched", LOG)
        adapter = yaml.safe_load(
            yaml.safe_load((K8S / "prometheus-adapter-rules.yaml").read_text())["data"][
                "config.yaml"
            ]
        )["rules"][0]["metricsQuery"]
        hpa = adapter.replace("<<.LabelMatchers>>", 'job="triton"').replace(
            "<<.GroupBy>>", "instance"
        )
        dashboard = json.loads(DASHBOARD.read_text())
        wanted = {hpa: "the HPA's rule"} | {
            t["expr"]: p["title"] for p in dashboard["panels"] for t in p["targets"]
        }
        missing = dict(wanted)
        deadline = time.monotonic() + 90
        while missing and time.monotonic() < deadline:
            time.sleep(2)
            missing = {e: w for e, w in missing.items() if not _query(prometheus, e)}
        lag = _query(prometheus, "logad_bus_lag_messages")
    _stop([watched])
    assert not missing, f"no series for: {sorted(missing.values())}"
    assert lag and lag[0]["metric"]["job"] == "logad-worker"
