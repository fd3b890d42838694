"""Keys checked per second by both key models on the same sessions, via Triton and in
process, in one run:

(a) windowed (deeplog_keys), ONNX Runtime in process, batches of 4,096 windows;
(b) windowed via Triton, the client's path (``KeyModel.score``), tensors in the gRPC messages;
(c) the same through system shared memory (``client/shared_memory.py``);
(d) stepwise (deeplog_steps), ONNX Runtime in process, the closed sessions as one stretch each
    (``closed_batches``: up to 16,384 keys a run);
(e) stepwise via Triton, the same closed sessions (``StepModel.worst_ranks``), gRPC;
(f) the same through shared memory;
(g) stepwise via Triton, a live stream: the sessions' keys interleaved at random, each
    session's state carried by the client (``StepStreamingDetector``, 1,024 keys a request);
(h) the same through shared memory.

A key is one check: each key of a session and its end. Each way's verdicts are compared with
the in-process run of the same model (the two models are different models and may differ).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from client.detection import KeyModel, PartResult
from client.step_detection import (
    StepModel,
    StepStreamingDetector,
    closed_batches,
    worst_of,
)
from client.triton_client import TritonClient
from export.contract.specs import DEEPLOG_KEYS, DEEPLOG_STEPS
from export.contract.vocab import UNKNOWN
from export.contract.windows import windows_of_sessions

BATCH_WINDOWS = 4096


@dataclass(frozen=True)
class KeyRate:
    way: str
    model: str
    how: str
    keys: int
    seconds: float
    same_verdicts: float  # share of sessions judged as the model's in-process run judges them

    @property
    def keys_per_s(self) -> float:
        return self.keys / self.seconds


def _timed(run: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    verdicts = run()
    return verdicts, time.perf_counter() - start


def _onnx(repository: Path, model: str, version: int) -> ort.InferenceSession:
    path = repository / model / str(version) / "model.onnx"
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def compare(
    keys: KeyModel,
    steps: StepModel,
    local: TritonClient,
    repository: Path,
    sessions: list[list[int]],
    rng: np.random.Generator,
) -> list[KeyRate]:
    """Judge ``sessions`` each way; keys/s and agreement with the same model in process.
    ``local``: a client of the same server with shared memory on."""
    keys_shm, steps_shm = KeyModel(local, keys.meta), StepModel(local, steps.meta)
    checks = sum(len(s) + 1 for s in sessions)
    h, g = keys.meta.window, keys.meta.top_g
    windows, next_keys = windows_of_sessions(sessions, h, keys.meta.end_marker)
    owners = np.repeat(np.arange(len(sessions)), [len(s) + 1 for s in sessions])

    def by_session(flags: np.ndarray) -> np.ndarray:
        return np.bincount(owners, weights=flags, minlength=len(sessions)) > 0

    windowed = _onnx(repository, DEEPLOG_KEYS.name, keys.meta.version)

    def windowed_in_process() -> np.ndarray:
        ranks = [
            windowed.run(
                ["RANK"],
                {
                    "WINDOWS": windows[i : i + BATCH_WINDOWS],
                    "NEXT_KEY": next_keys[i : i + BATCH_WINDOWS, None],
                },
            )[0][:, 0]
            for i in range(0, len(windows), BATCH_WINDOWS)
        ]
        return by_session((np.concatenate(ranks) >= g) | (next_keys == UNKNOWN))

    stepwise = _onnx(repository, DEEPLOG_STEPS.name, steps.meta.version)
    meta = steps.meta

    def steps_in_process() -> np.ndarray:
        worst = np.zeros(len(sessions), dtype=np.int64)
        for chosen, stretch, lengths in closed_batches(sessions, meta.end_marker):
            rank = stepwise.run(
                ["RANK"],
                {
                    "KEYS": stretch,
                    "LENGTHS": lengths[:, None],
                    "STATE": steps.zero_state(len(chosen)),
                },
            )[0]
            worst[chosen] = worst_of(rank, stretch, lengths, meta.vocabulary.size)
        return worst >= meta.top_g

    order = np.repeat(np.arange(len(sessions)), [len(s) for s in sessions])
    rng.shuffle(order)

    def live_stream(steps: StepModel) -> np.ndarray:
        detector = StepStreamingDetector(steps, batch_keys=1024, max_delay_s=float("inf"))
        left = {i: len(s) for i, s in enumerate(sessions)}
        cursor = dict.fromkeys(left, 0)
        found = []
        for i in order.tolist():
            name = str(i)
            found += detector.push(name, sessions[i][cursor[i]])
            cursor[i] += 1
            left[i] -= 1
            if left[i] == 0:
                found += detector.close(name)
        found += detector.flush()
        flags = np.zeros(len(sessions), dtype=bool)
        for result in found:
            if isinstance(result, PartResult) and result.abnormal:
                flags[int(result.session)] = True
        return flags

    runs = [
        ("a", DEEPLOG_KEYS.name, "windowed, ONNX Runtime in process", windowed_in_process),
        (
            "b",
            DEEPLOG_KEYS.name,
            "windowed, Triton, gRPC (KeyModel.score)",
            lambda: by_session(keys.score(windows, next_keys).anomalous),
        ),
        (
            "c",
            DEEPLOG_KEYS.name,
            "windowed, Triton, shared memory",
            lambda: by_session(keys_shm.score(windows, next_keys).anomalous),
        ),
        (
            "d",
            DEEPLOG_STEPS.name,
            "stepwise, ONNX Runtime in process, closed sessions",
            steps_in_process,
        ),
        (
            "e",
            DEEPLOG_STEPS.name,
            "stepwise, Triton, gRPC, closed sessions",
            lambda: steps.sessions_anomalous(sessions),
        ),
        (
            "f",
            DEEPLOG_STEPS.name,
            "stepwise, Triton, shared memory, closed sessions",
            lambda: steps_shm.sessions_anomalous(sessions),
        ),
        (
            "g",
            DEEPLOG_STEPS.name,
            "stepwise, Triton, gRPC, live stream (state carried)",
            lambda: live_stream(steps),
        ),
        (
            "h",
            DEEPLOG_STEPS.name,
            "stepwise, Triton, shared memory, live stream (state carried)",
            lambda: live_stream(steps_shm),
        ),
    ]
    measured = {way: (model, how, *_timed(run)) for way, model, how, run in runs}
    reference = {DEEPLOG_KEYS.name: measured["a"][2], DEEPLOG_STEPS.name: measured["d"][2]}
    return [
        KeyRate(way, model, how, checks, seconds, float(np.mean(verdicts == reference[model])))
        for way, (model, how, verdicts, seconds) in measured.items()
    ]


def goals(rates: list[KeyRate]) -> dict[str, tuple[float, float]]:
    """Issue 21's two throughput goals: (measured ratio, goal ratio)."""
    by_way = {r.way: r.keys_per_s for r in rates}
    best = max(by_way["e"], by_way["f"])  # the stepwise model via Triton, either transport
    return {
        "stepwise via Triton (e or f) / windowed via Triton over gRPC (b)": (
            best / by_way["b"],
            5.0,
        ),
        "stepwise via Triton (e or f) / stepwise in process (d)": (best / by_way["d"], 0.8),
    }
