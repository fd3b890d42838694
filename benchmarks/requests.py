"""One definition of each benchmark request, built from parsed log sessions as the client builds
them: key windows, parameter histories, session text and key counts, whole-session
``log_anomaly`` requests. Samples are drawn with a seeded generator passed in.

A sample of a batched model has no batch dimension (perf_analyzer stacks ``-b`` of them); a
sample of an ensemble without batching is one whole request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from client.log_anomaly import LogAnomalyModel
from client.param_detection import ParamDetector, ParamModel
from client.parsing import LogFormat, LogParser
from client.triton_client import TritonClient
from export.publish import KeyModelMeta, ParamModelMeta
from export.specs import (
    ASGNET,
    ASGNET_GNET,
    ASGNET_SNET,
    ASGNET_TOKENIZER,
    ASGNET_VNET,
    LOG_ANOMALY,
)
from export.windows import session_windows

Sample = dict[str, np.ndarray]


@dataclass(frozen=True)
class Workload:
    """The requests for one model: samples sent round robin, and the batch sizes to send."""

    model: str
    samples: list[Sample]
    batches: tuple[int, ...]


def all_windows(
    meta: KeyModelMeta, sessions: Sequence[Sequence[int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Every window of ``sessions`` (and the key after each), in order."""
    parts = [session_windows(s, meta.window, meta.end_marker) for s in sessions]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def key_windows(
    meta: KeyModelMeta, sessions: Sequence[Sequence[int]], n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` windows (and the key after each) drawn from every window of ``sessions``."""
    windows, keys = all_windows(meta, sessions)
    rows = rng.choice(len(windows), size=min(n, len(windows)), replace=False)
    return windows[rows], keys[rows]


def key_workload(
    model: str, meta: KeyModelMeta, sessions: Sequence[Sequence[int]], rng: np.random.Generator
) -> Workload:
    windows, keys = key_windows(meta, sessions, 1024, rng)
    samples = [{"WINDOWS": w, "NEXT_KEY": k[None]} for w, k in zip(windows, keys, strict=True)]
    return Workload(model, samples, (1, 64, 512))


def param_workload(
    meta: ParamModelMeta, lines: Sequence[bytes], log_format: LogFormat, rng: np.random.Generator
) -> Workload:
    """Parameter histories as the detector builds them from ``lines``: never sent anywhere here
    (the batch is never full), only collected."""
    detector = ParamDetector(ParamModel(None, meta), batch_entries=10**12)  # type: ignore[arg-type]
    parser = LogParser(log_format, templates=meta.vocabulary.templates, learn=False)
    for line_no, raw in enumerate(lines, start=1):
        parsed = parser.parse(raw, line_no)
        if parsed is not None:
            detector.check_line(parsed, log_format)
    entries = detector.pending
    rows = rng.choice(len(entries), size=min(1024, len(entries)), replace=False)
    samples = [
        {"HISTORY": entries[r].history, "KEY": np.array([entries[r].key], np.int64)} for r in rows
    ]
    return Workload(meta.model, samples, (1, 64, 512))


def asgnet_workloads(
    triton: TritonClient,
    diagnose: LogAnomalyModel,
    sessions: Sequence[Sequence[int]],
    rng: np.random.Generator,
    n: int = 128,
) -> list[Workload]:
    """Requests for each ASGNet model and both ensembles, from ``n`` sessions. S-Net's and
    G-Net's inputs are what the server's tokenizer and V-Net answer for those sessions; the
    tokenizer gets them in one batch, so every S-Net sample is padded to the longest (as in a
    batch the server forms; perf_analyzer needs one shape per input)."""
    picked = [sessions[i] for i in rng.choice(len(sessions), size=min(n, len(sessions)))]
    whole = [diagnose.request(list(s)) for s in picked]
    texts = [{"TEXT": r["TEXT"][0]} for r in whole]
    counts = [{"COUNTS": r["COUNTS"][0]} for r in whole]
    ids = triton.infer(
        ASGNET_TOKENIZER.name,
        {"TEXT": np.stack([t["TEXT"] for t in texts])},
        ASGNET_TOKENIZER.output_names,
    ).outputs
    tokens = [
        {"INPUT_IDS": ids["INPUT_IDS"][i], "ATTENTION_MASK": ids["ATTENTION_MASK"][i]}
        for i in range(len(texts))
    ]
    snet = triton.infer(ASGNET_SNET.name, ids, ["FEATURES", "CONFIDENCE"]).outputs
    latent = triton.infer(
        ASGNET_VNET.name, {"COUNTS": np.stack([c["COUNTS"] for c in counts])}, ["LATENT"]
    ).outputs["LATENT"]
    features = [
        {
            "FEATURES": snet["FEATURES"][i],
            "SNET_CONFIDENCE": snet["CONFIDENCE"][i],
            "LATENT": latent[i],
        }
        for i in range(len(texts))
    ]
    pairs = [{**t, **c} for t, c in zip(texts, counts, strict=True)]
    return [
        Workload(ASGNET_TOKENIZER.name, texts, (1,)),
        Workload(ASGNET_SNET.name, tokens, (1,)),
        Workload(ASGNET_VNET.name, counts, (1,)),
        Workload(ASGNET_GNET.name, features, (1,)),
        Workload(ASGNET.name, pairs, (1,)),
        Workload(LOG_ANOMALY.name, whole, (1,)),
    ]
