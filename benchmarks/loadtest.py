"""``make loadtest``: a sustained rate of real client requests against a running server for a set
time, then what it achieved: answers per second, errors by kind, latency percentiles over time,
and the server's resident memory from start to end.

Open loop: request i is due at i / rate seconds whether or not earlier ones have been answered,
and its latency counts from when it was due, so a server that falls behind shows as latency
(no coordinated omission). The test is bounded: at most ``max_requests`` requests, at most
``max_in_flight`` unanswered at once (a request due beyond that is shed and counted), and at
most ``timeout_s`` waiting for the last answers; then it stops by itself.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks import report
from benchmarks.process_memory import Memory, listening_pid, memory_of
from benchmarks.requests import workload_for
from benchmarks.served_models import bench_models, generated_log, place_models
from client.triton_client import TritonClient
from export.contract.specs import ALL_SPECS, LOG_ANOMALY
from server_config.launcher import TritonServer

REPORTS = Path("benchmarks/reports")
SHED = "shed: max_in_flight requests were already unanswered"
UNANSWERED = "unanswered when the test ended"

Done = Callable[[str | None], None]
Send = Callable[[int, Done], None]  # send request i; call done(None or the error) once


@dataclass(frozen=True)
class LoadConfig:
    model: str = LOG_ANOMALY.name
    rate: float = 200.0  # requests per second
    duration_s: float = 120.0
    batch: int = 1  # rows per request (models with batching only)
    max_requests: int = 200_000  # a bound on the count whatever the rate and duration
    max_in_flight: int = 256
    timeout_s: float = 10.0  # per request, and the longest wait for the last answers
    bucket_s: float = 10.0  # the time series' resolution
    warmup_requests: int = 20  # sent and awaited one by one before the clock starts
    seed: int = 0
    device: str = "cpu"  # a server of our own: where its models run
    url: str | None = None  # a server already running; None starts one on the bench models
    repository: Path = Path("model_repository")  # what the server at ``url`` serves
    server_pid: int | None = None  # with ``url``: found from the port when not given

    def __post_init__(self) -> None:
        models = {s.name for s in ALL_SPECS}
        if self.model not in models:
            raise ValueError(f"unknown model {self.model!r}; served: {', '.join(sorted(models))}")
        for name in ("rate", "duration_s", "timeout_s", "bucket_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_requests < 1 or self.max_in_flight < 1 or self.batch < 1:
            raise ValueError("max_requests, max_in_flight and batch must be at least 1")
        if self.url is not None and not self.url.rsplit(":", 1)[-1].isdigit():
            raise ValueError(f"url {self.url!r}: give the gRPC host:port, e.g. 127.0.0.1:8001")

    @property
    def count(self) -> int:
        return max(1, min(self.max_requests, math.floor(self.rate * self.duration_s)))

    @property
    def run_s(self) -> float:
        """How long requests are sent for (shorter than duration_s when max_requests binds)."""
        return self.count / self.rate


@dataclass
class Outcome:
    due: float  # seconds from the start
    sent: float | None = None  # None: shed
    done: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.done is not None and self.error is None

    @property
    def latency_s(self) -> float:
        assert self.done is not None
        return self.done - self.due


@dataclass
class Progress:
    """Live counters for the progress line, updated under the driver's lock."""

    sent: int = 0
    answered: int = 0
    errors: int = 0  # answers that were errors, and sheds

    @property
    def in_flight(self) -> int:
        return self.sent - self.answered


def drive(
    send: Send,
    count: int,
    rate: float,
    max_in_flight: int,
    drain_s: float,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Send ``count`` requests open loop at ``rate`` per second; wait up to ``drain_s`` for the
    last answers. Every request ends with an outcome: answered, an error, shed or unanswered."""
    outcomes = [Outcome(i / rate) for i in range(count)]
    progress = progress or Progress()
    changed = threading.Condition()
    closed = False
    start = time.perf_counter()

    def answer(outcome: Outcome) -> Done:
        def done(error: str | None) -> None:
            with changed:
                if closed or outcome.done is not None:
                    return  # too late (already counted unanswered), or answered twice
                outcome.done, outcome.error = time.perf_counter() - start, error
                progress.answered += 1
                progress.errors += error is not None
                changed.notify_all()

        return done

    for i, outcome in enumerate(outcomes):
        wait = start + outcome.due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        with changed:
            if progress.in_flight >= max_in_flight:
                outcome.error = SHED
                progress.errors += 1
                continue
            progress.sent += 1
        outcome.sent = time.perf_counter() - start
        try:
            send(i, answer(outcome))
        except Exception as exc:  # a failed send is an outcome, not a crash
            answer(outcome)(f"send failed: {exc}")

    deadline = time.perf_counter() + drain_s
    with changed:
        while progress.in_flight and (left := deadline - time.perf_counter()) > 0:
            changed.wait(left)
        closed = True
        for outcome in outcomes:
            if outcome.sent is not None and outcome.done is None:
                outcome.error = UNANSWERED
    return outcomes


@dataclass(frozen=True)
class Bucket:
    start_s: float
    seconds: float  # the interval's width (the last may be shorter)
    due: int  # requests due in this interval
    answered_per_s: float  # good answers arriving in it (the last one takes the late ones)
    errors: int  # of the requests due in it, shed included
    p50_ms: float  # latencies of the good answers to requests due in it; nan when none
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_mib: float  # the last memory reading in the interval
    backends_mib: float


def _ms(latencies: list[float], q: float) -> float:
    """The q-th percentile in ms (q=100: the maximum); nan when there is nothing to rank."""
    return float(np.percentile(latencies, q)) * 1e3 if latencies else math.nan


def time_series(
    outcomes: list[Outcome],
    duration_s: float,
    bucket_s: float,
    memory: list[tuple[float, Memory]],
) -> list[Bucket]:
    n = max(1, math.ceil(duration_s / bucket_s))

    def index(t: float) -> int:
        return min(max(int(t // bucket_s), 0), n - 1)

    due: list[list[Outcome]] = [[] for _ in range(n)]
    arrived = [0] * n
    for o in outcomes:
        due[index(o.due)].append(o)
        if o.ok:
            arrived[index(o.done)] += 1  # type: ignore[arg-type]
    readings: list[Memory | None] = [None] * n
    for t, m in memory:
        readings[index(t)] = m
    buckets = []
    for i in range(n):
        width = min(bucket_s, duration_s - i * bucket_s)
        ok = [o.latency_s for o in due[i] if o.ok]
        m = readings[i] or next((r for r in reversed(readings[:i]) if r), None)
        buckets.append(
            Bucket(
                start_s=i * bucket_s,
                seconds=width,
                due=len(due[i]),
                answered_per_s=arrived[i] / width,
                errors=sum(not o.ok for o in due[i]),
                p50_ms=_ms(ok, 50),
                p90_ms=_ms(ok, 90),
                p99_ms=_ms(ok, 99),
                max_ms=_ms(ok, 100),
                server_mib=m.server_bytes / 2**20 if m else math.nan,
                backends_mib=m.backends_bytes / 2**20 if m else math.nan,
            )
        )
    return buckets


@dataclass(frozen=True)
class LoadResult:
    config: LoadConfig
    due: int
    answered: int
    errors: dict[str, int]  # error text -> how many
    seconds: float  # from the first request due to the last answer
    latency_ms: dict[str, float]  # p50, p90, p95, p99, max of the good answers
    max_send_lag_ms: float  # how far behind schedule the sender itself ran
    memory_start: Memory | None
    memory_end: Memory | None
    memory_peak_bytes: int  # server and backends together, highest reading
    buckets: list[Bucket] = field(default_factory=list)

    @property
    def achieved_per_s(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0


def summarise(
    config: LoadConfig, outcomes: list[Outcome], memory: list[tuple[float, Memory]]
) -> LoadResult:
    ok = [o.latency_s for o in outcomes if o.ok]
    ends = [o.done for o in outcomes if o.done is not None]
    lags = [o.sent - o.due for o in outcomes if o.sent is not None]
    return LoadResult(
        config=config,
        due=len(outcomes),
        answered=len(ok),
        errors=dict(Counter(o.error for o in outcomes if o.error is not None).most_common()),
        seconds=max([config.run_s, *ends]),
        latency_ms={
            "p50": _ms(ok, 50),
            "p90": _ms(ok, 90),
            "p95": _ms(ok, 95),
            "p99": _ms(ok, 99),
            "max": _ms(ok, 100),
        },
        max_send_lag_ms=max(lags) * 1e3 if lags else 0.0,
        memory_start=memory[0][1] if memory else None,
        memory_end=memory[-1][1] if memory else None,
        memory_peak_bytes=max((m.total_bytes for _, m in memory), default=0),
        buckets=time_series(outcomes, config.run_s, config.bucket_s, memory),
    )


class MemoryWatch:
    """Reads the server's memory once a second (and prints progress each bucket) on a thread."""

    def __init__(self, pid: int | None, progress: Progress, bucket_s: float) -> None:
        self.pid, self.progress, self.bucket_s = pid, progress, bucket_s
        self.readings: list[tuple[float, Memory]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._start = 0.0

    def _read(self) -> Memory | None:
        if self.pid is None:
            return None
        memory = memory_of(self.pid)
        self.readings.append((time.perf_counter() - self._start, memory))
        return memory

    def _watch(self) -> None:
        next_print = self.bucket_s
        while not self._stop.wait(1.0):
            memory = self._read()
            elapsed = time.perf_counter() - self._start
            if elapsed >= next_print:
                next_print += self.bucket_s
                p = self.progress
                rss = f", server+backends {memory.total_bytes / 2**20:,.0f} MiB" if memory else ""
                print(
                    f"  {elapsed:5.0f} s: sent {p.sent:,}, answered {p.answered:,}, "
                    f"errors {p.errors:,}, in flight {p.in_flight:,}{rss}",
                    flush=True,
                )

    def __enter__(self) -> MemoryWatch:
        self._start = time.perf_counter()
        self._read()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._read()


@contextlib.contextmanager
def _server(config: LoadConfig) -> Iterator[tuple[str, Path, int | None]]:
    """The server to load, its repository and its pid: the running one at ``config.url``, or
    one started here on the benchmark's models (and stopped, by its pid, at the end)."""
    if config.url is not None:
        port = int(config.url.rsplit(":", 1)[1])
        yield config.url, config.repository, config.server_pid or listening_pid(port)
        return
    models = bench_models()
    place_models(models.repository, config.device)
    with TritonServer(models.repository, log_path=models.workdir / "loadtest.log") as server:
        yield server.grpc_url, models.repository, server.pid


def run_loadtest(config: LoadConfig, out: Path = REPORTS, name: str = "loadtest") -> LoadResult:
    """Run the load test; write ``name``.md, .csv and .png under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    lines = generated_log(300, config.seed + 100)
    with _server(config) as (url, repository, pid):
        triton = TritonClient(url, timeout_s=config.timeout_s)
        try:
            rng = np.random.default_rng(config.seed)
            workload = workload_for(triton, repository, config.model, lines, rng)
            requests = workload.requests(config.batch)
            outputs = next(s for s in ALL_SPECS if s.name == config.model).output_names
            for i in range(config.warmup_requests):
                triton.infer(config.model, requests[i % len(requests)], outputs)

            def send(i: int, done: Done) -> None:
                triton.start_infer(config.model, requests[i % len(requests)], outputs, done)

            where = f"server pid {pid}" if pid else "server pid unknown: no memory readings"
            print(
                f"load test: {config.model} x{config.batch} at {config.rate:g} requests/s for "
                f"{config.run_s:.0f} s ({config.count:,} requests, "
                f"{len(requests)} distinct) against {url}, {where}",
                flush=True,
            )
            progress = Progress()
            with MemoryWatch(pid, progress, config.bucket_s) as watch:
                outcomes = drive(
                    send,
                    config.count,
                    config.rate,
                    config.max_in_flight,
                    config.timeout_s,
                    progress,
                )
        finally:
            triton.close()
    result = summarise(config, outcomes, watch.readings)
    write_report(result, started, url, out / name)
    return result


def write_report(result: LoadResult, started: datetime, url: str, stem: Path) -> Path:
    c = result.config
    report.write_csv(Path(f"{stem}.csv"), result.buckets)
    report.plot_load(result.buckets, c.rate, f"{c.model} x{c.batch}", Path(f"{stem}.png"))
    lat = result.latency_ms
    device = "what the running server chose" if c.url else c.device.upper()
    errors = (
        "\n".join(f"- {n:,} x {text}" for text, n in result.errors.items())
        if result.errors
        else "- none"
    )

    def mib(m: Memory | None) -> str:
        if m is None:
            return "not measured (server pid unknown; give --server-pid)"
        return (
            f"{m.total_bytes / 2**20:,.0f} MiB (tritonserver {m.server_bytes / 2**20:,.0f} + "
            f"{m.backends} backend processes {m.backends_bytes / 2**20:,.0f})"
        )

    rows = "\n".join(
        f"| {b.start_s:.0f} | {b.due:,} | {b.answered_per_s:,.1f} | {b.errors:,} | "
        f"{b.p50_ms:.1f} | {b.p90_ms:.1f} | {b.p99_ms:.1f} | {b.max_ms:.1f} | "
        f"{b.server_mib + b.backends_mib:,.0f} |"
        for b in result.buckets
    )
    text = f"""# Load test (`make loadtest`)

Measured {started:%Y-%m-%d %H:%M} UTC on {report.machine(device)}, against {url}.

{c.model}, {c.batch} row(s) per request: real client requests built from the generated HDFS \
log, sent open loop (request i is due at i / rate whatever came before; its latency counts \
from when it was due, so a server that falls behind shows as latency). Bounds: {c.count:,} \
requests; at most {c.max_in_flight} unanswered at once (a request due beyond that is shed and \
counted as an error); {c.timeout_s:g} s per request and for the last answers.

| target | due | answered | achieved | errors | p50 ms | p90 ms | p95 ms | p99 ms | max ms |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| {c.rate:g}/s for {c.run_s:.0f} s | {result.due:,} | {result.answered:,} | \
{result.achieved_per_s:,.1f}/s | {sum(result.errors.values()):,} | {lat["p50"]:.1f} | \
{lat["p90"]:.1f} | {lat["p95"]:.1f} | {lat["p99"]:.1f} | {lat["max"]:.1f} |

Achieved = good answers / seconds from the first request due to the last answer \
({result.seconds:.1f} s); rows/s = achieved x {c.batch}. The sender itself ran at most \
{result.max_send_lag_ms:.1f} ms behind schedule.

Resident memory (VmRSS):
- start: {mib(result.memory_start)}
- end: {mib(result.memory_end)}
- peak: {result.memory_peak_bytes / 2**20:,.0f} MiB

Errors:
{errors}

## Over time ({c.bucket_s:g} s intervals)

| from s | due | answered/s | errors | p50 ms | p90 ms | p99 ms | max ms | RSS MiB |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{rows}

![rate, latency and memory over time]({stem.name}.png)

CSV: [{stem.name}.csv]({stem.name}.csv).
"""
    path = Path(f"{stem}.md")
    path.write_text(text)
    return path
