"""One definition of each benchmark request, built from parsed log sessions as the client builds
them: key windows, parameter histories, session text and key counts, whole-session
``log_anomaly`` requests. Samples are drawn with a seeded generator passed in.

A sample of a batched model has no batch dimension (perf_analyzer stacks ``-b`` of them); a
sample of an ensemble without batching is one whole request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from client.detection import KeyModel, open_key_model
from client.formats import LogFormat, builtin
from client.log_anomaly import LogAnomalyModel, open_log_anomaly
from client.ops.training import session_keys
from client.param_detection import ParamDetector, ParamModel, open_param_model
from client.parsing import LogParser
from client.step_detection import StepModel, open_step_model
from client.triton_client import TritonClient
from export.contract.metas import KeyModelMeta, ParamModelMeta
from export.contract.specs import (
    ALL_SPECS,
    ASGNET,
    ASGNET_GNET,
    ASGNET_SNET,
    ASGNET_TOKENIZER,
    ASGNET_VNET,
    DEEPLOG_KEYS,
    DEEPLOG_PARAMS,
    DEEPLOG_PARAMS_TORCHSCRIPT,
    DEEPLOG_STEPS,
    LOG_ANOMALY,
)
from export.contract.windows import session_windows

Sample = dict[str, np.ndarray]


@dataclass(frozen=True)
class Workload:
    """The requests for one model: samples sent round robin, and the batch sizes to send."""

    model: str
    samples: list[Sample]
    batches: tuple[int, ...]

    def requests(self, batch: int) -> list[Sample]:
        """Whole requests of ``batch`` samples each (a model without batching takes each sample
        as a request), covering the samples once, in order."""
        spec = next(s for s in ALL_SPECS if s.name == self.model)
        if spec.max_batch_size == 0:
            if batch != 1:
                raise ValueError(f"{self.model} takes no batch: one request is one sample")
            return list(self.samples)
        if not 1 <= batch <= spec.max_batch_size:
            raise ValueError(f"{self.model} takes batches of 1 to {spec.max_batch_size}")
        starts = range(0, max(len(self.samples) - batch, 0) + 1, batch)
        return [
            {
                name: np.stack([s[name] for s in self.samples[i : i + batch]])
                for name in self.samples[0]
            }
            for i in starts
        ]


@dataclass(frozen=True)
class ServedClients:
    """The client's models on a running server, and the sessions of the log they were read from."""

    keys: KeyModel
    params: ParamModel
    diagnose: LogAnomalyModel
    sessions: list[list[int]]
    steps: StepModel | None = None  # where the repository has deeplog_steps


def open_clients(triton: TritonClient, repository: Path, lines: Sequence[bytes]) -> ServedClients:
    """Load every model (asgnet too, which log_anomaly does not load) and parse ``lines``."""
    keys = open_key_model(triton)
    params = open_param_model(triton)
    diagnose = open_log_anomaly(triton, keys)
    triton.load_model(ASGNET.name)
    sessions = list(session_keys(lines, keys.meta.vocabulary).values())
    steps = open_step_model(triton) if (repository / DEEPLOG_STEPS.name).is_dir() else None
    return ServedClients(keys, params, diagnose, sessions, steps)


def every_workload(
    triton: TritonClient, clients: ServedClients, lines: Sequence[bytes], rng: np.random.Generator
) -> list[Workload]:
    """The requests for every served model and both ensembles, from ``lines`` (HDFS)."""
    return [
        key_workload(DEEPLOG_KEYS.name, clients.keys.meta, clients.sessions, rng),
        param_workload(clients.params.meta, lines, builtin("hdfs"), rng),
        *asgnet_workloads(triton, clients.diagnose, clients.sessions, rng),
    ]


def workload_for(
    triton: TritonClient,
    repository: Path,
    model: str,
    lines: Sequence[bytes],
    rng: np.random.Generator,
) -> Workload:
    """The requests for ``model`` alone, opening only the client models it needs (a server
    that serves only DeepLog can be loaded with DeepLog requests)."""
    if model in (DEEPLOG_PARAMS.name, DEEPLOG_PARAMS_TORCHSCRIPT.name):
        params = open_param_model(triton, model)
        return param_workload(params.meta, lines, builtin("hdfs"), rng)
    keys = open_key_model(triton)
    sessions = list(session_keys(lines, keys.meta.vocabulary).values())
    if model == DEEPLOG_KEYS.name:
        return key_workload(model, keys.meta, sessions, rng)
    if model == ASGNET.name:
        triton.load_model(ASGNET.name)  # log_anomaly loads its parts, not this ensemble
    diagnose = open_log_anomaly(triton, keys)
    workloads = {w.model: w for w in asgnet_workloads(triton, diagnose, sessions, rng)}
    if model not in workloads:
        raise ValueError(f"no requests for {model!r}; models: {', '.join(sorted(workloads))}")
    return workloads[model]


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
