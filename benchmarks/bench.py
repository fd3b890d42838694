"""``make bench``: every served model and both ensembles under perf_analyzer, the client end to
end, the four ways of running the key model side by side, and the parser against Drain3, all
in one run on this machine; CSV, markdown and PNG under benchmarks/reports/.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from benchmarks import (
    end_to_end,
    key_models,
    parser_report,
    parsers,
    perf_analyzer,
    report,
    side_by_side,
)
from benchmarks.requests import Workload, all_windows, every_workload, open_clients
from benchmarks.served_models import bench_models, generated_log, place_models
from client.triton_client import TritonClient
from export.hdfs_data import DEFAULT_DATA
from server_config.launcher import TritonServer

REPORTS = Path("benchmarks/reports")


@dataclass(frozen=True)
class BenchConfig:
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    measurement_ms: int = 2000
    seed: int = 0
    device: str = "cpu"  # or "gpu": models on KIND_GPU
    tensorrt_fp16: bool = False
    hdfs_copies: int = 25  # loghub's HDFS_2k.log replicated: 50,000 real lines
    generated_blocks: int = 3000  # the generated log for session-shaped runs
    loop_windows: int = 2000  # the per-window PyTorch loop's subset
    quick: bool = False  # one concurrency level, short windows: a smoke run


def run_bench(config: BenchConfig, out: Path = REPORTS) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    work = out / "perf_analyzer"
    work.mkdir(exist_ok=True)
    rng = np.random.default_rng(config.seed)
    models = bench_models()
    place_models(models.repository, config.device, config.tensorrt_fp16)
    device = _device(config)
    hdfs_real = (DEFAULT_DATA / "loghub" / "HDFS" / "HDFS_2k.log").read_bytes().splitlines()
    generated = generated_log(config.generated_blocks, config.seed + 100)
    sections: list[str] = []
    started = datetime.now(timezone.utc)

    with TritonServer(models.repository, log_path=models.workdir / "tritonserver.log") as server:
        triton = TritonClient(server.grpc_url)
        clients = open_clients(triton, models.repository, generated)
        keys = clients.keys
        print(
            f"serving on {device}: {len(clients.sessions)} sessions in the generated log",
            flush=True,
        )

        # 1. perf_analyzer
        workloads = every_workload(triton, clients, generated, rng)
        unstable: list[str] = []
        points = _sweep(server.grpc_url, workloads, config, work, unstable)
        report.write_csv(out / "perf_analyzer.csv", points)
        report.plot_sweep(points, out / "perf_analyzer.png")
        sections.append(_perf_section(points, workloads, unstable))

        # 2. end to end
        runs = [
            end_to_end.run(
                f"loghub HDFS_2k.log x{config.hdfs_copies} (real lines)",
                end_to_end.replicate(hdfs_real, config.hdfs_copies),
                keys,
            ),
            end_to_end.run("generated HDFS log", generated, keys),
            *(
                [end_to_end.run("generated HDFS log", generated, keys, steps=clients.steps)]
                if clients.steps
                else []
            ),
            end_to_end.run("generated HDFS log", generated, keys, params=clients.params),
            end_to_end.run("generated HDFS log", generated, keys, diagnose=clients.diagnose),
        ]
        report.write_csv(out / "end_to_end.csv", runs)
        sections.append(_e2e_section(runs))

        # 3. side by side
        windows, next_keys = all_windows(keys.meta, clients.sessions)
        ways = side_by_side.compare(
            keys, models.repository, windows, next_keys, config.loop_windows
        )
        report.write_csv(out / "side_by_side.csv", ways)
        report.plot_bars(
            [f"({w.way}) {w.how}" for w in ways],
            [w.windows_per_s for w in ways],
            "windows/s",
            "deeplog_keys, same model and windows",
            out / "side_by_side.png",
        )
        sections.append(_ways_section(ways))

        # 4. both key models, keys checked per second
        if clients.steps is not None:
            with TritonClient(server.grpc_url, shared_memory=True) as local:
                rates = key_models.compare(
                    keys, clients.steps, local, models.repository, clients.sessions, rng
                )
            report.write_csv(out / "key_models.csv", rates)
            report.plot_bars(
                [f"({r.way}) {r.how}" for r in rates],
                [r.keys_per_s for r in rates],
                "keys/s",
                "both key models, the same sessions",
                out / "key_models.png",
            )
            sections.append(_key_models_section(rates))
        triton.close()

    # 5. parsers (no server needed)
    parsed = parsers.compare(DEFAULT_DATA / "loghub")
    report.write_csv(out / "parsers.csv", parsed)
    sections.append(parser_report.section(parsed))

    header = (
        f"# Benchmarks (`make bench`)\n\nMeasured {started:%Y-%m-%d %H:%M} UTC on "
        f"{report.machine(device)}; torch threads {torch.get_num_threads()}. Every comparison "
        "below was measured in this same run. Models: the demo's (`make demo` trains them: "
        "h=10 two-layer LSTM key model, parameter-value LSTM, ASGNet with a 2-layer 64-wide "
        "RoBERTa), published to build/bench/model_repository.\n"
    )
    path = out / "README.md"
    path.write_text(header + "\n" + "\n\n".join(sections) + "\n")
    print(f"report: {path}")
    return path


def _device(config: BenchConfig) -> str:
    if config.device != "gpu":
        return "CPU (ONNX Runtime CPU provider, TorchScript on CPU)"
    name = report.gpu_name()
    provider = "TensorRT FP16" if config.tensorrt_fp16 else "CUDA execution provider"
    return f"{name} ({provider})"


def _sweep(
    url: str, workloads: list[Workload], config: BenchConfig, work: Path, unstable: list[str]
) -> list[perf_analyzer.PerfPoint]:
    levels = config.concurrency[:1] if config.quick else config.concurrency
    points: list[perf_analyzer.PerfPoint] = []
    for w in workloads:
        data = perf_analyzer.write_input_data(work / f"{w.model}.json", w.samples)
        for batch in w.batches[:1] if config.quick else w.batches:
            began = time.perf_counter()
            points += perf_analyzer.run(
                url, w.model, data, batch, levels, work, config.measurement_ms, unstable
            )
            best = max((p.inferences_per_s for p in points if p.model == w.model), default=0)
            print(
                f"perf_analyzer {w.model} b{batch}: up to {best:,.0f} rows/s "
                f"({time.perf_counter() - began:.0f} s)",
                flush=True,
            )
    return points


def _perf_section(points, workloads, unstable: list[str]) -> str:
    sources = ", ".join(f"{w.model} {len(w.samples)}" for w in workloads)
    return (
        "## Served models under perf_analyzer (gRPC)\n\n"
        "perf_analyzer 2.51 (tritonclient wheel), one run per concurrency level, 2 s windows "
        "until three agree within 20%; rows/s = requests/s x batch. Requests are real client "
        "requests built from the sessions of the generated HDFS log (distinct samples per "
        f"model: {sources}), sent round robin. Batch 1 for the ASGNet parts and ensembles: "
        "one session per request is how the client sends them (the dynamic batcher groups "
        "concurrent ones). Queue and compute are the server's own figures.\n\n"
        + report.perf_table(points)
        + (
            f"\n\nNot stable within 50% over 10 windows, left out: {', '.join(unstable)}."
            if unstable
            else ""
        )
        + "\n\n![throughput and latency against concurrency](perf_analyzer.png)\n\n"
        "CSV: [perf_analyzer.csv](perf_analyzer.csv)."
    )


def _e2e_section(runs: list[end_to_end.EndToEnd]) -> str:
    stages = ["parse", "sessions", "triton", "decisions", "params"]
    lines = [
        "## End to end: raw lines to verdicts (`detect_stream`)\n",
        "The client's own path from a file's lines to verdicts, Triton over gRPC included. "
        "Seconds per stage (parse; sessions = grouping and windows; triton = requests and "
        "answers; decisions = judging and alerts; params = the parameter-value check).\n",
        "| data | path | lines | sessions | lines/s | " + " | ".join(stages) + " |",
        "|---|---|---:|---:|---:|" + "---:|" * len(stages),
    ]
    for r in runs:
        split = " | ".join(f"{r.stages.get(s, 0.0):.2f}" for s in stages)
        lines.append(
            f"| {r.data} | {r.path} | {r.lines:,} | {r.sessions:,} | {r.lines_per_s:,.0f} | "
            f"{split} |"
        )
    lines.append(
        "\nloghub's HDFS sample is 2,000 lines drawn at random from the whole log, so its "
        "blocks have one line each (2,200 sessions); session-shaped runs use the generated "
        "log, whose blocks follow the real HDFS life cycle and templates."
    )
    return "\n".join(lines)


def _ways_section(ways: list[side_by_side.WayResult]) -> str:
    triton = next(w for w in ways if w.way == "d").windows_per_s
    lines = [
        "## Side by side: one key model, the same windows, four ways\n",
        "| way | windows | seconds | windows/s | ratio to Triton | same verdicts as (a) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for w in ways:
        lines.append(
            f"| ({w.way}) {w.how} | {w.windows:,} | {w.seconds:.2f} | {w.windows_per_s:,.0f} | "
            f"{w.windows_per_s / triton:.2f} | {w.same_verdicts:.2%} |"
        )
    lines.append("\n![windows per second](side_by_side.png)")
    return "\n".join(lines)


def _key_models_section(rates: list[key_models.KeyRate]) -> str:
    lines = [
        "## Both key models: keys checked per second\n",
        "The same sessions (the generated log's), each key and each session's end one check. "
        "The windowed model (deeplog_keys, the paper's) reads the h=10 keys before every key; "
        "the stepwise one (deeplog_steps) reads each key once, its LSTM state carried. "
        "Agreement: sessions judged as the same model judges them in process.\n",
        "| way | model | keys | seconds | keys/s | same verdicts |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rates:
        lines.append(
            f"| ({r.way}) {r.how} | {r.model} | {r.keys:,} | {r.seconds:.2f} | "
            f"{r.keys_per_s:,.0f} | {r.same_verdicts:.2%} |"
        )
    lines.append("")
    for name, (measured, goal) in key_models.goals(rates).items():
        verdict = "met" if measured >= goal else "not met"
        lines.append(f"- {name}: {measured:.2f}x (goal {goal:g}x: {verdict})")
    lines.append("\n![keys per second](key_models.png)")
    return "\n".join(lines)
