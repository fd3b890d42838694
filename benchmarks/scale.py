"""``make bench-scale``: the scale-out on this machine, measured (benchmarks/reports/scale.md).

Two Triton replicas over one repository, NATS JetStream, ``detect --source`` workers as
processes of their own, and lines published at a steady rate:
1. faults: one replica SIGKILLed, later one worker SIGKILLed, mid-stream; lines/s before and
   after, failed requests, and every session's verdict against a clean run of the same lines;
2. version swaps: 10 new versions rolled out to both replicas while the workers run and a
   client keeps sending requests; failed requests;
3. throughput of 1, 2 and 3 workers on a backlog, against the same 2 replicas.
Every line carries one timestamp, so sessions end when the bus goes quiet, whichever worker
reads them (as in tests/integration/test_log_bus.py): the verdicts can be compared one to one.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.report import machine
from client.detection import open_key_model
from client.formats import builtin
from client.log_bus import Bus, BusAddress, BusLayout, LinePublisher
from client.ops.demo import DemoConfig
from client.ops.retrain import swap_in_release
from client.ops.training import learn_corpus, train_and_publish
from client.ops.workload import WorkloadConfig, generate_workload
from client.pipeline import StreamConfig, detect_stream
from client.sources import Record
from client.triton_client import TritonClient
from export.contract.specs import DEEPLOG_KEYS
from export.deeplog_keys import KeyModelConfig
from server_config.launcher import PROJECT_ROOT, TritonServer, free_ports
from server_config.services import NatsServer

REPORT = PROJECT_ROOT / "benchmarks" / "reports" / "scale.md"
HDFS = builtin("hdfs")
PARTITIONS = 12
_TIME = re.compile(rb"^\d{6} \d{6}")


@dataclass(frozen=True)
class ScaleConfig:
    blocks: int = 2500  # about 45,000 lines
    rate: float = 1500.0  # lines/s published in the fault run
    swaps: int = 10
    workers: tuple[int, ...] = (1, 2, 3)
    session_idle_s: float = 3.0


@dataclass
class Worker:
    process: subprocess.Popen
    metrics_port: int

    def lines_read(self) -> float | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
                text = r.read().decode()
        except OSError:
            return None
        found = re.search(r"^logad_lines_read_total (\S+)$", text, re.M)
        return float(found.group(1)) if found else None


@dataclass
class Timeline:
    """Lines read by every worker, sampled each second: (seconds since start, total)."""

    samples: list[tuple[float, float]] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)

    def rate(self, start: float, end: float) -> float:
        inside = [(t, n) for t, n in self.samples if start <= t <= end]
        if len(inside) < 2:
            return 0.0
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def _one_time(lines: list[bytes]) -> list[bytes]:
    return [_TIME.sub(b"081109 203615", line, count=1) for line in lines]


def _worker(nats: NatsServer, url: str, stream: str, config: ScaleConfig) -> Worker:
    port = free_ports(1)[0]
    process = subprocess.Popen(
        [
            sys.executable, "-m", "client", "detect", "--source", f"{nats.url}/{stream}",
            "--url", url, "--no-asgnet", "--partitions", str(PARTITIONS),
            "--session-idle", str(config.session_idle_s), "--ack-wait", "5", "--lease", "4",
            "--no-store", "--quiet", "--metrics-port", str(port),
        ],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    return Worker(process, port)


def _stop(workers: list[Worker]) -> list[str]:
    errors = []
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
        errors.append(worker.process.communicate(timeout=120)[1].decode())
    return errors


def _publish(nats: NatsServer, stream: str, lines: list[bytes], rate: float | None) -> None:
    bus = Bus(BusAddress.parse(f"{nats.url}/{stream}"))
    layout = bus.ensure_streams(BusLayout(PARTITIONS, HDFS.name, HDFS.digest))
    publisher = LinePublisher(bus, layout, HDFS)
    started = time.monotonic()
    for n, raw in enumerate(lines, start=1):
        publisher.add(Record(raw, n, 0, 0))
        if rate and n % 100 == 0:
            publisher.tick()
            ahead = n / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    publisher.flush()
    bus.close()


def _verdicts(nats: NatsServer, stream: str) -> list[dict]:
    bus = Bus(BusAddress.parse(f"{nats.url}/{stream}"))
    try:
        messages = bus.messages(f"{stream}_findings")
    finally:
        bus.close()
    return [json.loads(m.data) for m in messages if m.subject.endswith(".verdicts")]


def _await(nats, stream: str, sessions: int, timeout: float = 300) -> list[dict]:
    deadline = time.monotonic() + timeout
    verdicts = _verdicts(nats, stream)
    while len({v["session"] for v in verdicts}) < sessions and time.monotonic() < deadline:
        time.sleep(2)
        verdicts = _verdicts(nats, stream)
    return verdicts


def _sample(workers: list[Worker], timeline: Timeline, started: float, stop: threading.Event):
    last: dict[int, float] = {}
    while not stop.wait(1.0):
        for i, worker in enumerate(workers):
            read = worker.lines_read()
            if read is not None:
                last[i] = read  # a killed worker's lines stay counted
        timeline.samples.append((time.monotonic() - started, sum(last.values())))


def _compare(verdicts: list[dict], clean: dict[str, tuple[bool, int]]) -> dict[str, int]:
    found = {v["session"]: (v["abnormal"], v["keys"]) for v in verdicts}
    per_session = Counter(v["session"] for v in verdicts)
    return {
        "sessions (clean run)": len(clean),
        "verdicts on the findings stream": len(verdicts),
        "sessions missing": len(set(clean) - set(found)),
        "sessions with more than one verdict": sum(1 for n in per_session.values() if n > 1),
        "verdicts that differ from the clean run": sum(
            1 for s, v in found.items() if clean.get(s) != v
        ),
    }


def _failed_requests(replicas: list[TritonServer]) -> int:
    failed = 0
    for server in replicas:
        if not server.is_running():
            continue
        with TritonClient(server.grpc_url) as one:
            stats = one.replicas.all()[0].client.get_inference_statistics(DEEPLOG_KEYS.name)
        failed += sum(s.inference_stats.fail.count for s in stats.model_stats)
    return failed


class RequestLoop:
    """A client sending one key-model request after another to the newest version, counting
    the ones that fail (what a version swap could cost a caller)."""

    def __init__(self, url: str, model) -> None:
        self.triton = TritonClient(url)
        self.model = model
        self.sent = self.failed = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        inputs = {
            "WINDOWS": np.ones((64, self.model.meta.window), dtype=np.int64),
            "NEXT_KEY": np.ones((64, 1), dtype=np.int64),
        }
        while not self._stop.is_set():
            self.sent += 1
            try:
                self.triton.infer(DEEPLOG_KEYS.name, inputs, ["RANK"])
            except Exception as exc:  # every failure is counted, none hidden
                self.failed += 1
                self.errors.append(str(exc)[:200])

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self.triton.close()


def run_scale(config: ScaleConfig = ScaleConfig()) -> Path:
    work = Path(tempfile.mkdtemp(prefix="scale-"))
    repository = work / "repository"
    demo = DemoConfig()
    corpus = learn_corpus(
        generate_workload(WorkloadConfig(demo.train_blocks, 0.0, demo.seed)).lines
    )
    key_config = KeyModelConfig(top_g=demo.top_g, epochs=demo.epochs, seed=demo.seed)
    print("# training the demo's key model", file=sys.stderr)
    train_and_publish(corpus.sessions, corpus.vocabulary, repository, key_config, "workload")
    lines = _one_time(
        generate_workload(WorkloadConfig(config.blocks, anomaly_rate=0.05, seed=61)).lines
    )
    replicas = [TritonServer(repository) for _ in range(2)]
    for server in replicas:
        server.start()
    url = ",".join(s.grpc_url for s in replicas)
    report: list[str] = []
    with NatsServer(work / "nats") as nats:
        triton = TritonClient(url)
        model = open_key_model(triton)
        clean: dict[str, tuple[bool, int]] = {}
        detect_stream(
            lines, model, lambda _: None,
            on_verdict=lambda v: clean.update({v.session: (v.abnormal, v.keys)}),
            config=StreamConfig(session_idle_s=config.session_idle_s),
        )  # fmt: skip

        # 1. faults
        print("# 1. faults: a replica, then a worker, SIGKILLed mid-stream", file=sys.stderr)
        workers = [_worker(nats, url, "faults", config) for _ in range(2)]
        time.sleep(5)
        timeline, stop = Timeline(), threading.Event()
        started = time.monotonic()
        sampler = threading.Thread(target=_sample, args=(workers, timeline, started, stop))
        sampler.start()
        duration = len(lines) / config.rate
        kill_replica, kill_worker = duration * 0.3, duration * 0.6

        def faults() -> None:
            time.sleep(kill_replica)
            replicas[0].kill()
            timeline.events.append((time.monotonic() - started, "replica 1 SIGKILLed"))
            time.sleep(kill_worker - kill_replica)
            workers[0].process.send_signal(signal.SIGKILL)
            timeline.events.append((time.monotonic() - started, "worker 1 SIGKILLed"))

        killer = threading.Thread(target=faults)
        killer.start()
        _publish(nats, "faults", lines, config.rate)
        published = time.monotonic() - started
        killer.join()
        verdicts = _await(nats, "faults", len(clean))
        stop.set()
        sampler.join()
        errors = _stop(workers)
        faults_failed = _failed_requests(replicas)
        t1, t2 = (t for t, _ in timeline.events)
        report += [
            "## 1. A replica and a worker SIGKILLed mid-stream",
            "",
            f"{len(lines):,} lines published at {config.rate:,.0f} lines/s ({published:.0f} s) "
            f"to {PARTITIONS} partitions; 2 workers, 2 replicas. Replica 1 SIGKILLed at "
            f"{t1:.0f} s, worker 1 at {t2:.0f} s.",
            "",
            "| stretch | lines/s read by the workers |",
            "|---|---:|",
            f"| before the replica kill (5 s to {t1:.0f} s) | {timeline.rate(5, t1):,.0f} |",
            f"| one replica ({t1:.0f} s to {t2:.0f} s) | {timeline.rate(t1, t2):,.0f} |",
            f"| one replica, one worker ({t2:.0f} s to {published:.0f} s) | "
            f"{timeline.rate(t2, published):,.0f} |",
            f"| the survivor catching up (to the last verdict) | "
            f"{timeline.rate(published, timeline.samples[-1][0]):,.0f} |",
            "",
            "| verdicts | count |",
            "|---|---:|",
            *(f"| {k} | {v:,} |" for k, v in _compare(verdicts, clean).items()),
            f"| requests failed on the surviving replica (Triton's statistics) | {faults_failed} |",
            "",
            "The survivor's summary: `" + _summary(errors[1]) + "`",
            "",
        ]
        replicas[0].start()

        # 2. swaps
        print(f"# 2. {config.swaps} version swaps under load", file=sys.stderr)
        workers = [_worker(nats, url, "swaps", config) for _ in range(2)]
        time.sleep(5)
        swap_times = []
        with RequestLoop(url, model) as loop:
            publisher = threading.Thread(
                target=_publish, args=(nats, "swaps", lines, config.rate / 2)
            )
            publisher.start()
            quick = KeyModelConfig(top_g=demo.top_g, epochs=1, seed=demo.seed)
            for _ in range(config.swaps):
                version = train_and_publish(
                    corpus.sessions, corpus.vocabulary, repository, quick, "swap", False
                )
                clock = time.perf_counter()
                swap_in_release(triton, repository, (DEEPLOG_KEYS.name,), version)
                swap_times.append(time.perf_counter() - clock)
            publisher.join()
        each = triton.ready_versions_each([DEEPLOG_KEYS.name])
        verdicts = _await(nats, "swaps", len(clean))
        errors = _stop(workers)
        worker_failures = sum(1 for e in errors if "error:" in e)
        report += [
            f"## 2. {config.swaps} version swaps across both replicas under load",
            "",
            f"While 2 workers read {len(lines):,} lines at {config.rate / 2:,.0f} lines/s and a "
            f"client sent {loop.sent:,} key-model requests (64 windows each), "
            f"{config.swaps} new versions were published and rolled out to both replicas "
            f"(load on each, wait for each to be ready; {np.median(swap_times):.1f} s median "
            "per rollout).",
            "",
            "| | count |",
            "|---|---:|",
            f"| client requests failed | {loop.failed} of {loop.sent:,} |",
            f"| workers that stopped on an error | {worker_failures} of 2 |",
            f"| sessions verdicted (of {len(clean):,}) | "
            f"{len({v['session'] for v in verdicts}):,} |",
            f"| newest version on each replica after | "
            f"{', '.join(f'v{v[DEEPLOG_KEYS.name][-1]}' for v in each.values())} |",
            "",
            *(f"First failure: `{loop.errors[0]}`" for _ in loop.errors[:1]),
        ]

        # 3. throughput of 1, 2, 3 workers
        report += [
            "## 3. Throughput of 1, 2 and 3 workers against 2 replicas",
            "",
            f"A backlog of {len(lines):,} lines, then the workers started together; lines/s "
            "from the first line read to the last (the workers' own counters).",
            "",
            "| workers | lines/s | sessions verdicted |",
            "|---:|---:|---:|",
        ]
        for count in config.workers:
            stream = f"backlog{count}"
            print(f"# 3. {count} worker(s) on a backlog", file=sys.stderr)
            _publish(nats, stream, lines, None)
            workers = [_worker(nats, url, stream, config) for _ in range(count)]
            timeline, stop = Timeline(), threading.Event()
            started = time.monotonic()
            sampler = threading.Thread(target=_sample, args=(workers, timeline, started, stop))
            sampler.start()
            verdicts = _await(nats, stream, len(clean))
            stop.set()
            sampler.join()
            _stop(workers)
            moving = [(t, n) for t, n in timeline.samples if 0 < n < len(lines)]
            rate = (
                (moving[-1][1] - moving[0][1]) / (moving[-1][0] - moving[0][0])
                if len(moving) > 1
                else 0.0
            )
            report.append(f"| {count} | {rate:,.0f} | {len({v['session'] for v in verdicts}):,} |")
        triton.close()
    for server in replicas:
        server.stop()
    text = "\n".join(
        [
            "# Scale-out on this machine (`make bench-scale`)",
            "",
            f"Machine: {machine('cpu')}. Everything (NATS, 2 tritonservers, the workers, the "
            "publisher) shares these cores, so these figures are CPU-bound by design; they show "
            "correctness under faults and how the parts share the machine, not GPU capacity "
            "(see the README's sizing model).",
            "",
            *report,
            "",
        ]
    )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text)
    print(text)
    return REPORT


def _summary(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "messages (" in line]
    return lines[-1].lstrip("# ") if lines else "(none)"
