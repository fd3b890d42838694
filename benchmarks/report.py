"""Benchmark results as CSV, markdown tables and PNG plots."""

from __future__ import annotations

import csv
import os
import platform
import subprocess
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from benchmarks.perf_analyzer import PerfPoint


def machine(device: str) -> str:
    cpus = os.cpu_count() or 0
    return f"{platform.machine()}, {platform.system()}, {cpus} CPUs; models on {device}"


def gpu_name() -> str:
    """The first GPU's name as the driver reports it (the server's models run there, whatever
    torch build this process has)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "GPU (nvidia-smi did not answer)"
    return out.splitlines()[0].strip() if out.strip() else "GPU (none listed)"


def write_csv(path: Path, rows: list) -> Path:
    dicts = [asdict(r) for r in rows]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dicts[0]))
        writer.writeheader()
        writer.writerows(dicts)
    return path


def perf_table(points: list[PerfPoint]) -> str:
    lines = [
        "| model | batch | concurrency | rows/s | p50 ms | p90 ms | p95 ms | p99 ms | "
        "queue ms | compute ms (in / infer / out) | network ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for p in points:
        lines.append(
            f"| {p.model} | {p.batch} | {p.concurrency} | {p.inferences_per_s:,.0f} | "
            f"{p.p50_ms:.2f} | {p.p90_ms:.2f} | {p.p95_ms:.2f} | {p.p99_ms:.2f} | "
            f"{p.queue_ms:.2f} | {p.compute_input_ms:.2f} / {p.compute_infer_ms:.2f} / "
            f"{p.compute_output_ms:.2f} | {p.network_ms:.2f} |"
        )
    return "\n".join(lines)


def plot_sweep(points: list[PerfPoint], path: Path) -> Path:
    """Per model and batch: throughput against concurrency (left), p50/p99 latency (right)."""
    series: dict[tuple[str, int], list[PerfPoint]] = {}
    for p in points:
        series.setdefault((p.model, p.batch), []).append(p)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    colours = plt.get_cmap("tab20").colors  # more series than the default cycle's ten
    for i, ((model, batch), pts) in enumerate(sorted(series.items())):
        colour = colours[i % len(colours)]
        pts = sorted(pts, key=lambda p: p.concurrency)
        x = [p.concurrency for p in pts]
        label = f"{model} b{batch}"
        left.plot(x, [p.inferences_per_s for p in pts], marker="o", color=colour, label=label)
        right.plot(x, [p.p50_ms for p in pts], marker="o", color=colour)
        right.plot(x, [p.p99_ms for p in pts], marker="x", ls="--", color=colour)
    left.set(xlabel="concurrency", ylabel="rows/s", yscale="log", title="throughput")
    right.set(xlabel="concurrency", ylabel="ms", yscale="log", title="latency p50 (o), p99 (x)")
    left.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xscale("log", base=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bars(labels: list[str], values: list[float], unit: str, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(labels) + 1.5))
    ax.barh(labels, values)
    ax.set(xlabel=unit, xscale="log", title=title)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_load(buckets: list, target_per_s: float, title: str, path: Path) -> Path:
    """A load test over time, one point per interval at its middle: answered/s and errors/s
    against the target, latency percentiles, memory. ``buckets`` are loadtest.Bucket rows."""
    x = [b.start_s + b.seconds / 2 for b in buckets]
    fig, (rate, latency, memory) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    rate.plot(x, [b.answered_per_s for b in buckets], marker="o", label="answered/s")
    rate.plot(
        x,
        [b.errors / b.seconds for b in buckets],
        marker="x",
        color="tab:red",
        label="errors/s (shed included)",
    )
    rate.axhline(target_per_s, color="grey", ls="--", label="target")
    rate.set(ylabel="requests/s", ylim=(0, None), title=title)
    for q in ("p50", "p90", "p99"):
        latency.plot(x, [getattr(b, f"{q}_ms") for b in buckets], marker="o", label=q)
    latency.set(ylabel="latency ms", ylim=(0, None))
    memory.plot(x, [b.server_mib for b in buckets], marker="o", label="tritonserver")
    memory.plot(
        x,
        [b.server_mib + b.backends_mib for b in buckets],
        marker="o",
        label="with its backend processes",
    )
    memory.set(ylabel="RSS MiB", xlabel="seconds into the test", ylim=(0, None), xlim=(0, None))
    for ax in (rate, latency, memory):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
