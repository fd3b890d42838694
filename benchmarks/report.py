"""Benchmark results as CSV, markdown tables and PNG plots."""

from __future__ import annotations

import csv
import os
import platform
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from benchmarks.perf_analyzer import PerfPoint


def machine(device: str) -> str:
    cpus = os.cpu_count() or 0
    return f"{platform.machine()}, {platform.system()}, {cpus} CPUs; models on {device}"


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
    for (model, batch), pts in sorted(series.items()):
        pts = sorted(pts, key=lambda p: p.concurrency)
        x = [p.concurrency for p in pts]
        label = f"{model} b{batch}"
        left.plot(x, [p.inferences_per_s for p in pts], marker="o", label=label)
        line = right.plot(x, [p.p50_ms for p in pts], marker="o", label=f"{label} p50")[0]
        right.plot(x, [p.p99_ms for p in pts], marker="x", ls="--", color=line.get_color())
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
