"""NVIDIA's perf_analyzer, as shipped in the tritonclient 2.51 wheel: found, run, read.

The binary lands in the venv's bin/ with the wheel; it links Debian's libb64 and CUDA's runtime
library (from the nvidia-cuda-runtime-cu12 wheel), which ``make bench`` installs. One run
sweeps concurrency for one model at one batch size; its CSV (``-f``, ``--verbose-csv``) gives
throughput, latency percentiles and the server-side queue / compute split, in microseconds.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class PerfAnalyzerMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class PerfPoint:
    """One concurrency level of one perf_analyzer run (latencies in milliseconds)."""

    model: str
    batch: int
    concurrency: int
    inferences_per_s: float  # rows per second (requests/s x batch)
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    client_send_ms: float
    network_ms: float  # network + server send/recv
    queue_ms: float  # server: waiting in the queue (dynamic batcher included)
    compute_input_ms: float
    compute_infer_ms: float
    compute_output_ms: float
    client_recv_ms: float


def binary() -> Path:
    """perf_analyzer beside this interpreter (the venv's bin/), where the wheel installs it."""
    path = Path(sys.executable).parent / "perf_analyzer"
    if not path.exists():
        raise PerfAnalyzerMissing(
            f"{path} not found: it comes with tritonclient==2.51.0 (run `make bench`, which "
            "installs it and its libraries)"
        )
    return path


def library_path() -> str:
    """LD_LIBRARY_PATH with the CUDA runtime library of the nvidia-cuda-runtime-cu12 wheel."""
    try:
        import nvidia.cuda_runtime
    except ImportError as exc:
        raise PerfAnalyzerMissing(
            "perf_analyzer needs libcudart.so.12 from nvidia-cuda-runtime-cu12 (`make bench` "
            "installs it)"
        ) from exc
    lib = str(Path(next(iter(nvidia.cuda_runtime.__path__))) / "lib")
    return os.pathsep.join(p for p in (lib, os.environ.get("LD_LIBRARY_PATH", "")) if p)


def check() -> str:
    """perf_analyzer's version line: proof that it and its libraries load."""
    done = subprocess.run(
        [str(binary()), "--version"],
        env={**os.environ, "LD_LIBRARY_PATH": library_path()},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise PerfAnalyzerMissing(f"perf_analyzer does not start: {done.stderr.strip()}")
    version = (done.stdout or done.stderr).strip()
    print(version)
    return version


def write_input_data(path: Path, samples: Sequence[Mapping[str, np.ndarray]]) -> Path:
    """perf_analyzer's real-data JSON: one entry per request, each tensor with its shape
    (sessions differ in length). BYTES tensors go as lists of strings."""

    def tensor(array: np.ndarray) -> dict:
        if array.dtype == object:
            content = [bytes(x).decode("utf-8") for x in array.reshape(-1)]
        else:
            content = array.reshape(-1).tolist()
        return {"content": content, "shape": list(array.shape)}

    data = [{name: tensor(a) for name, a in sample.items()} for sample in samples]
    path.write_text(json.dumps({"data": data}))
    return path


# (stability %, max trials): perf_analyzer's default-like check first; a level that stays
# noisy (high concurrency on a small machine) gets a looser one before it is reported unstable.
STABILITY = ((20, 6), (50, 10))


def run(
    url: str,
    model: str,
    input_data: Path,
    batch: int,
    concurrency: Sequence[int],
    workdir: Path,
    measurement_ms: int = 2000,
    unstable: list[str] | None = None,
) -> list[PerfPoint]:
    """One perf_analyzer run per concurrency level (its range flag is linear only; the sweep is
    1, 2, 4, 8) over gRPC with the real data of ``input_data``. Every entry there carries its
    own shapes, so no ``--shape`` is given (perf_analyzer would then refuse other shapes).
    A level that never measures stably is left out and named in ``unstable``."""
    points = []
    for level in concurrency:
        csv_path = workdir / f"{model}_b{batch}_c{level}.csv"
        for percent, trials in STABILITY:
            done = _run_once(
                url, model, input_data, batch, level, measurement_ms, percent, trials, csv_path
            )
            output = done.stdout + done.stderr
            if done.returncode == 0 or "stable measurement" not in output:
                break
        if done.returncode != 0 and "stable measurement" in output:
            if unstable is not None:
                unstable.append(f"{model} b{batch} c{level}")
            continue
        if done.returncode != 0:
            tail = "\n".join(output.strip().splitlines()[-15:])
            raise RuntimeError(
                f"perf_analyzer on {model} (batch {batch}, concurrency {level}) failed:\n{tail}"
            )
        points += read_csv(csv_path, model, batch)
    return points


def _run_once(
    url: str,
    model: str,
    input_data: Path,
    batch: int,
    level: int,
    measurement_ms: int,
    stability_percent: int,
    max_trials: int,
    csv_path: Path,
) -> subprocess.CompletedProcess:
    command = [
        str(binary()),
        *("-m", model, "-u", url, "-i", "grpc", "-b", str(batch)),
        *("--input-data", str(input_data), "--concurrency-range", f"{level}:{level}"),
        *("--measurement-interval", str(measurement_ms)),
        *("--stability-percentage", str(stability_percent), "--max-trials", str(max_trials)),
        *("-f", str(csv_path), "--verbose-csv"),
    ]
    env = {**os.environ, "LD_LIBRARY_PATH": library_path()}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def read_csv(path: Path, model: str, batch: int) -> list[PerfPoint]:
    """perf_analyzer's CSV (microseconds) as PerfPoints (milliseconds)."""
    with path.open() as f:
        rows = list(csv.DictReader(f))

    def ms(row: dict, column: str) -> float:
        return float(row[column]) / 1000.0

    return [
        PerfPoint(
            model=model,
            batch=batch,
            concurrency=int(row["Concurrency"]),
            inferences_per_s=float(row["Inferences/Second"]),
            p50_ms=ms(row, "p50 latency"),
            p90_ms=ms(row, "p90 latency"),
            p95_ms=ms(row, "p95 latency"),
            p99_ms=ms(row, "p99 latency"),
            avg_ms=ms(row, "Avg latency"),
            client_send_ms=ms(row, "Client Send"),
            network_ms=ms(row, "Network+Server Send/Recv"),
            queue_ms=ms(row, "Server Queue"),
            compute_input_ms=ms(row, "Server Compute Input"),
            compute_infer_ms=ms(row, "Server Compute Infer"),
            compute_output_ms=ms(row, "Server Compute Output"),
            client_recv_ms=ms(row, "Client Recv"),
        )
        for row in rows
    ]
