"""``make bench-follow``: the always-on client measured as an ops team runs it.

Every figure comes from ``python -m client detect --follow`` in a process of its own, against
a real Triton server, on the demo's models:

- **Sustained lines/s and memory**: a pre-written log of ``lines`` generated HDFS lines is
  followed from its start until every line is read; lines/s from the client's own
  ``logad_lines_read_total`` metric, resident memory (VmRSS from /proc) once a second. Both
  paths: DeepLog's key model alone, and ``log_anomaly`` (DeepLog + ASGNet per closed session).
- **Alert latency**: lines written at a steady rate (a share of the sustained rate just
  measured) with the wall clock's timestamps, as a live service writes them; for each alert,
  the time from the write of the line it names (for a diagnosis, the session's last line)
  until the alert is in the alerts file.
- **Interruptions**: a run killed with SIGKILL and resumed from its checkpoint, and a run
  whose server is killed and restarted mid-stream, each compared with a clean run of the same
  log: every verdict and alert exactly once.

Writes ``benchmarks/reports/follow.md`` (+ .json, .csv, .png).
"""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from benchmarks.process_memory import rss_bytes
from benchmarks.served_models import BENCH_DIR, bench_models
from client.ops.workload import WorkloadConfig, generate_workload
from export.contract.specs import ALL_SPECS
from export.repository import versions
from server_config.launcher import TritonServer, free_ports

REPORTS = Path("benchmarks/reports")
BLOCK = re.compile(rb"blk_-?\d+")


@dataclass(frozen=True)
class FollowBenchConfig:
    lines: int = 2_000_000  # followed by each path for throughput and memory
    latency_s: float = 60.0  # how long lines are written for the latency runs
    latency_share: float = 0.7  # of the sustained rate, per path
    session_idle_s: float = 5.0  # latency runs (wall-clock timestamps): a block's quiet time
    interrupted_blocks: int = 3000  # the log of the kill and restart runs (about 54,000 lines)
    seed: int = 41
    workdir: Path = BENCH_DIR / "follow"


@dataclass
class PathRun:
    path: str
    lines: int
    seconds: float
    lines_per_s: float
    rss_start_mib: float
    rss_at_10pct_mib: float
    rss_end_mib: float
    rss_peak_mib: float
    verdicts: int
    alerts: int
    samples: list[tuple[float, float, float]] = field(default_factory=list)  # t, lines, MiB


@dataclass
class LatencyRun:
    path: str
    rate: float  # lines/s written
    lines: int
    alerts: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    what: str


@dataclass
class InterruptedRun:
    what: str
    verdicts_expected: int
    verdicts_got: int
    verdicts_twice: int
    alerts_expected: int
    alerts_got: int
    alerts_twice: int
    alerts_lost: int
    seconds: float


def write_log(path: Path, lines: int, seed: int) -> int:
    """At least ``lines`` generated lines, in chunks of consecutive time (each chunk starts
    where the one before ended), so memory stays small while writing. Returns lines written."""
    written, chunk = 0, 0
    start = WorkloadConfig().start
    blocks_per_chunk = max(min(10_000, lines // 18), 100)  # a block is about 18 lines
    with open(path, "wb") as out:
        while written < lines:
            config = WorkloadConfig(blocks_per_chunk, 0.05, seed + chunk, start=start)
            chunk_lines = generate_workload(config).lines
            out.write(b"\n".join(chunk_lines) + b"\n")
            written += len(chunk_lines)
            start = _time_of(chunk_lines[-1])
            chunk += 1
    return written


def _time_of(line: bytes) -> datetime:
    return datetime.strptime(line[:13].decode(), "%y%m%d %H%M%S")


class Detect:
    """One ``python -m client detect`` process and its metrics port."""

    def __init__(self, url: str, log: Path, *args: str) -> None:
        (self.port,) = free_ports(1)
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "client", "detect", str(log), "--url", url),
                *("--quiet", "--no-store", "--metrics-port", str(self.port), *args),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def metric(self, name: str) -> float | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(found.group(1)) if found else None

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=300)
        if self.process.returncode != 0:
            raise RuntimeError(f"detect failed: {err.decode()[-2000:]}")
        return err.decode()

    def finish(self) -> str:
        _, err = self.process.communicate(timeout=1800)
        if self.process.returncode != 0:
            raise RuntimeError(f"detect failed: {err.decode()[-2000:]}")
        return err.decode()


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def sustained(url: str, log: Path, total: int, path: str, args: list[str], out: Path) -> PathRun:
    """Follow ``log`` from its start until all ``total`` lines are read."""
    alerts, verdicts = out / f"{path}_alerts.jsonl", out / f"{path}_verdicts.jsonl"
    for f in (alerts, verdicts):
        f.unlink(missing_ok=True)
    run = Detect(url, log, "--follow", "--alerts", str(alerts), "--verdicts", str(verdicts), *args)
    samples: list[tuple[float, float, float]] = []
    started = first = None
    while True:
        time.sleep(1.0)
        read = run.metric("logad_lines_read_total")
        now = time.monotonic()
        if read is None:
            if run.process.poll() is not None:
                raise RuntimeError(run.process.stderr.read().decode()[-2000:])
            continue
        if started is None:
            started = now
        if first is None and read > 0:
            first = now
        samples.append((now - started, read, rss_bytes(run.process.pid) / 2**20))
        if read >= total:
            break
    run.stop()
    seconds = now - (first or started)
    mib = [s[2] for s in samples]
    tenth = next((s[2] for s in samples if s[1] >= total / 10), mib[0])
    return PathRun(
        path,
        total,
        seconds,
        total / seconds,
        mib[0],
        tenth,
        mib[-1],
        max(mib),
        len(_jsonl(verdicts)),
        len(_jsonl(alerts)),
        samples,
    )


def latency(
    url: str, path: str, rate: float, config: FollowBenchConfig, args: list[str]
) -> list[LatencyRun]:
    """Lines written at ``rate`` with wall-clock timestamps, as a live service writes them;
    each alert's delay. An alert on a line (the DeepLog path's key alerts) is timed from that
    line's write; an alert raised when its session closed (a session's end, every alert on the
    log_anomaly path, which checks a session when it closes) from the write of the session's
    last line, so it includes the --session-idle wait."""
    out = config.workdir
    log, alerts = out / f"live_{path}.log", out / f"live_{path}_alerts.jsonl"
    for f in (log, alerts):
        f.unlink(missing_ok=True)
    needed = int(rate * config.latency_s)
    workload = generate_workload(WorkloadConfig(max(needed // 17, 100), 0.05, config.seed + 9))
    lines = workload.lines[:needed]
    log.write_bytes(b"")
    idle = f"{config.session_idle_s:g}"
    run = Detect(url, log, "--follow", "--alerts", str(alerts), "--session-idle", idle, *args)
    while run.metric("logad_lines_read_total") is None:  # ready: models bound, port open
        if run.process.poll() is not None:
            raise RuntimeError(run.process.stderr.read().decode()[-2000:])
        time.sleep(0.2)
    written_at = np.zeros(len(lines) + 1)
    last_line: dict[str, int] = {}
    delays: dict[str, list[float]] = {"line": [], "session": []}
    reader = _AlertTail(alerts)

    def take() -> float | None:
        seen = None
        for alert, seen in reader.new():
            on_line = path == "deeplog" and alert["actual"]["name"] != "<end>"
            line = alert["line"] if on_line else last_line[alert["session"]]
            delays["line" if on_line else "session"].append(seen - written_at[line])
        return seen

    start = time.monotonic()
    with open(log, "ab") as f:
        for i in range(0, len(lines), 10):
            stamp = datetime.now().strftime("%y%m%d %H%M%S").encode()
            chunk = [stamp + line[13:] for line in lines[i : i + 10]]
            f.write(b"\n".join(chunk) + b"\n")
            f.flush()
            written_at[i + 1 : i + 1 + len(chunk)] = time.monotonic()
            for n, line in enumerate(chunk, start=i + 1):
                for block in BLOCK.findall(line):
                    last_line[block.decode()] = n
            take()
            ahead = start + (i + 10) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    quiet = time.monotonic()
    while time.monotonic() - quiet < config.session_idle_s + 5:  # the last sessions close
        quiet = take() or quiet
        time.sleep(0.02)
    run.stop()
    what = {
        "line": "write of the alert's line to the alert in the file",
        "session": "write of the session's last line to the alert in the file (the session "
        f"closes after {idle} s of quiet, --session-idle)",
    }
    return [_latency_row(path, rate, len(lines), delays[k], what[k]) for k in what if delays[k]]


def _latency_row(path: str, rate: float, lines: int, delays: list[float], what: str):
    ms = np.array(delays) * 1000
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return LatencyRun(path, rate, lines, len(ms), p50, p90, p99, float(ms.max()), what)


class _AlertTail:
    """New whole lines of an alerts file, each with when it was first seen."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def new(self) -> list[tuple[dict, float]]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        now = time.monotonic()
        found = [(json.loads(x), now) for x in data[self.offset : end].splitlines()]
        self.offset = end
        return found


def interrupted(
    url: str, server: TritonServer, log: Path, config: FollowBenchConfig, args: list[str]
) -> list[InterruptedRun]:
    """A clean run; a run killed (SIGKILL) and resumed from its checkpoint; a run whose
    server is killed and restarted mid-stream. Each compared with the clean run."""
    out = config.workdir
    common = [*args, "--session-idle", "300"]

    def files(name: str) -> tuple[Path, Path]:
        found = (out / f"{name}_alerts.jsonl", out / f"{name}_verdicts.jsonl")
        for f in found:
            f.unlink(missing_ok=True)
        return found

    def outputs(name: str) -> list[str]:
        alerts, verdicts = files(name)
        return ["--alerts", str(alerts), "--verdicts", str(verdicts)]

    clean = outputs("clean")
    Detect(url, log, *common, *clean).finish()
    reference = (_jsonl(out / "clean_alerts.jsonl"), _jsonl(out / "clean_verdicts.jsonl"))

    checkpoint = out / "killed.checkpoint"
    checkpoint.unlink(missing_ok=True)
    killed = [*outputs("killed"), "--checkpoint", str(checkpoint), "--checkpoint-every", "1"]
    started = time.monotonic()
    first = Detect(url, log, *common, *killed)
    while len(_jsonl(out / "killed_verdicts.jsonl")) < len(reference[1]) // 3:
        time.sleep(0.05)
    first.process.kill()
    first.process.wait()
    Detect(url, log, *common, *killed).finish()
    runs = [_compare("killed with SIGKILL at a third, resumed", out, "killed", reference, started)]

    restarted = outputs("restarted")
    started = time.monotonic()
    run = Detect(url, log, *common, "--retry-for", "120", *restarted)
    while len(_jsonl(out / "restarted_verdicts.jsonl")) < len(reference[1]) // 3:
        time.sleep(0.05)
    server.kill()
    time.sleep(1.0)
    server.start()
    run.finish()
    runs.append(
        _compare("server SIGKILLed at a third, restarted", out, "restarted", reference, started)
    )
    return runs


def _compare(what: str, out: Path, name: str, reference, started: float) -> InterruptedRun:
    alerts, verdicts = _jsonl(out / f"{name}_alerts.jsonl"), _jsonl(out / f"{name}_verdicts.jsonl")
    want_alerts, want_verdicts = ({r["id"] for r in x} for x in reference)
    got_alerts, got_verdicts = [a["id"] for a in alerts], [v["id"] for v in verdicts]
    return InterruptedRun(
        what,
        len(want_verdicts),
        len(set(got_verdicts) & want_verdicts),
        len(got_verdicts) - len(set(got_verdicts)),
        len(want_alerts),
        len(set(got_alerts) & want_alerts),
        len(got_alerts) - len(set(got_alerts)),
        len(want_alerts - set(got_alerts)),
        time.monotonic() - started,
    )


PATHS = {
    "deeplog": ["--no-asgnet"],
    "log_anomaly": [],
}


def run_follow_bench(config: FollowBenchConfig = FollowBenchConfig()) -> dict:
    config.workdir.mkdir(parents=True, exist_ok=True)
    models = bench_models()
    served = tuple(spec.name for spec in ALL_SPECS if versions(models.repository, spec.name))
    big = config.workdir / "big.log"
    print(f"== writing {config.lines:,} generated HDFS lines to {big}", flush=True)
    total = write_log(big, config.lines, config.seed)
    results: dict = {"config": {k: str(v) for k, v in asdict(config).items()}, "lines": total}
    log_path = models.workdir / "tritonserver_follow.log"
    with TritonServer(models.repository, load_models=served, log_path=log_path) as server:
        url = server.grpc_url
        throughput = []
        for path, args in PATHS.items():
            print(f"== following {total:,} lines: {path}", flush=True)
            throughput.append(sustained(url, big, total, path, args, config.workdir))
            print(f"   {throughput[-1].lines_per_s:,.0f} lines/s", flush=True)
        results["throughput"] = [asdict(r) for r in throughput]
        lat = []
        for run in throughput:
            rate = round(run.lines_per_s * config.latency_share, -1)
            print(f"== alert latency at {rate:,.0f} lines/s: {run.path}", flush=True)
            lat += latency(url, run.path, rate, config, PATHS[run.path])
        results["latency"] = [asdict(r) for r in lat]
        small = config.workdir / "interrupted.log"
        lines = generate_workload(WorkloadConfig(config.interrupted_blocks, 0.05, config.seed))
        small.write_bytes(b"\n".join(lines.lines) + b"\n")
        print("== interruptions: SIGKILL and resume, server restart", flush=True)
        results["interrupted_lines"] = len(lines.lines)
        results["interrupted"] = [
            asdict(r) for r in interrupted(url, server, small, config, PATHS["deeplog"])
        ]
    write_follow_report(results, throughput)
    return results


def write_follow_report(results: dict, throughput: list[PathRun]) -> Path:
    from benchmarks.report import machine

    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "follow.json").write_text(json.dumps(results, indent=1))
    with (REPORTS / "follow.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "seconds", "lines_read", "rss_mib"])
        for r in throughput:
            writer.writerows([r.path, round(t, 1), int(n), round(m, 1)] for t, n, m in r.samples)
    _plot_memory(throughput, REPORTS / "follow.png")
    lines = [
        "# Always-on detection: `python -m client detect --follow` (`make bench-follow`)",
        "",
        f"Measured {datetime.now():%Y-%m-%d} on {machine('cpu')}; the demo's models, one "
        "Triton server, the client in a process of its own reading the followed file.",
        "",
        f"## Sustained lines/s and memory ({results['lines']:,} generated HDFS lines)",
        "",
        "| path | lines/s | seconds | RSS at start | RSS at 10% | RSS at the end | peak "
        "| verdicts | alerts |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in throughput:
        lines.append(
            f"| {r.path} | {r.lines_per_s:,.0f} | {r.seconds:,.0f} | {r.rss_start_mib:,.0f} MiB "
            f"| {r.rss_at_10pct_mib:,.0f} MiB | {r.rss_end_mib:,.0f} MiB | "
            f"{r.rss_peak_mib:,.0f} MiB | {r.verdicts:,} | {r.alerts:,} |"
        )
    lines += [
        "",
        "![client memory while following](follow.png)",
        "",
        "## Alert latency while following a live log",
        "",
        "| path | written at | lines | alerts | p50 | p90 | p99 | max | measured from |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results["latency"]:
        lines.append(
            f"| {r['path']} | {r['rate']:,.0f} lines/s | {r['lines']:,} | {r['alerts']:,} | "
            f"{r['p50_ms']:,.0f} ms | {r['p90_ms']:,.0f} ms | {r['p99_ms']:,.0f} ms | "
            f"{r['max_ms']:,.0f} ms | {r['what']} |"
        )
    lines += [
        "",
        f"## Interruptions ({results['interrupted_lines']:,} lines, DeepLog path, compared "
        "with a clean run of the same log)",
        "",
        "| run | verdicts | twice | alerts | twice | lost | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results["interrupted"]:
        lines.append(
            f"| {r['what']} | {r['verdicts_got']:,} of {r['verdicts_expected']:,} | "
            f"{r['verdicts_twice']} | {r['alerts_got']:,} of {r['alerts_expected']:,} | "
            f"{r['alerts_twice']} | {r['alerts_lost']} | {r['seconds']:.1f} |"
        )
    path = REPORTS / "follow.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _plot_memory(runs: list[PathRun], path: Path) -> Path:
    from benchmarks.report import plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for r in runs:
        ax.plot([s[1] / 1e6 for s in r.samples], [s[2] for s in r.samples], label=r.path)
    ax.set_xlabel("million lines read")
    ax.set_ylabel("client VmRSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title("detect --follow: resident memory as the log is read")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
