"""DeepLog on the real HDFS data, judged through a running Triton server.

Train on ``hdfs/hdfs_train`` (normal sessions, as the paper did); test on ``hdfs_test_abnormal``
plus the normal sessions of ``robust_log_train.csv``. Identical sessions are scored once and
counted with their multiplicity (the model is deterministic, so the figures are the same).
"""

from __future__ import annotations

import json
import platform
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from client.detection import open_key_model
from client.training import train_and_publish
from client.triton_client import TritonClient
from export.deeplog_keys import KeyModelConfig
from export.hdfs_data import (
    data_dir,
    hdfs_vocabulary,
    read_key_sessions,
    read_labelled_sessions,
)
from server_config.launcher import TritonServer

PAPER = {"FP": 833, "FN": 619, "precision": 0.95, "recall": 0.96, "F1": 0.96}


@dataclass(frozen=True)
class EvalResult:
    normal_sessions: int
    abnormal_sessions: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    train_seconds: float
    detect_seconds: float
    windows_per_second: float
    version: int


def confusion(
    flags: dict[tuple[str, ...], bool], normal: Counter, abnormal: Counter
) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) with session multiplicities."""
    tp = sum(n for s, n in abnormal.items() if flags[s])
    fn = sum(abnormal.values()) - tp
    fp = sum(n for s, n in normal.items() if flags[s])
    return tp, fp, fn


def evaluate_hdfs(
    repository: Path, config: KeyModelConfig, data_root: Path | None = None
) -> EvalResult:
    folder = data_dir(data_root)
    train = list(read_key_sessions(folder / "hdfs_train"))
    vocabulary = hdfs_vocabulary(train)
    start = time.perf_counter()
    version = train_and_publish(
        [[vocabulary.key_of_name(k) for k in s] for s in train],
        vocabulary,
        repository,
        config,
        source=str(folder / "hdfs_train"),
    )
    train_seconds = time.perf_counter() - start
    abnormal = Counter(tuple(s) for s in read_key_sessions(folder / "hdfs_test_abnormal"))
    normal = Counter(
        tuple(s)
        for s, label in read_labelled_sessions(folder / "robust_log_train.csv")
        if label == 0
    )
    unique = list(set(abnormal) | set(normal))
    with TritonServer(repository) as server:
        triton = TritonClient(server.grpc_url)
        model = open_key_model(triton, repository, version)
        start = time.perf_counter()
        keyed = [[vocabulary.key_of_name(k) for k in s] for s in unique]
        verdicts = model.sessions_anomalous(keyed)
        detect_seconds = time.perf_counter() - start
        windows = sum(len(s) + (1 if config.end_marker else 0) for s in keyed)
        triton.close()
    flags = dict(zip(unique, verdicts.tolist(), strict=True))
    tp, fp, fn = confusion(flags, normal, abnormal)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return EvalResult(
        sum(normal.values()),
        sum(abnormal.values()),
        fp,
        fn,
        precision,
        recall,
        f1,
        train_seconds,
        detect_seconds,
        windows / detect_seconds,
        version,
    )


def write_report(result: EvalResult, config: KeyModelConfig, path: Path, command: str) -> None:
    """Markdown report beside a JSON copy of the figures."""
    path.parent.mkdir(parents=True, exist_ok=True)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = (
        f"{platform.machine()}, {platform.system()}, {_cpus()} CPUs, no GPU (CPU ONNX Runtime)"
    )
    r = result
    text = f"""# DeepLog log-key model on HDFS, through Triton

Measured {when} on {machine} with `{command}`.
Training: `hdfs_train` ({config.epochs} epochs, h={config.window}, g={config.top_g},
{config.layers} LSTM layers of {config.hidden}, end-of-session key: {config.end_marker}),
{r.train_seconds:.0f} s including ONNX export and parity check.
Test: {r.abnormal_sessions:,} sessions of `hdfs_test_abnormal` and {r.normal_sessions:,} normal
sessions of `robust_log_train.csv`, every verdict from deeplog_keys v{r.version} served by Triton
over gRPC ({r.detect_seconds:.1f} s, {r.windows_per_second:,.0f} windows/s, identical sessions
scored once).

{_table(r)}

The paper's normal test set (553,366 sessions) is not in the shared data, so false positives
here are counted on the 6,000 normal sessions of `robust_log_train.csv`: FP counts are not
comparable one to one, precision is (it depends on the ratio of normal to abnormal sessions).
"""
    path.write_text(text)
    path.with_suffix(".json").write_text(
        json.dumps(
            {
                "measured": when,
                "machine": machine,
                "command": command,
                "config": asdict(config),
                **asdict(result),
            },
            indent=1,
        )
    )


def _table(r: EvalResult) -> str:
    rows = [
        ("", "FP", "FN", "precision", "recall", "F1", "normal test sessions"),
        ("---", "---:", "---:", "---:", "---:", "---:", "---:"),
        (
            "this project",
            f"{r.fp:,}",
            f"{r.fn:,}",
            f"{r.precision:.4f}",
            f"{r.recall:.4f}",
            f"{r.f1:.4f}",
            f"{r.normal_sessions:,}",
        ),
        (
            "DeepLog paper (CCS'17)",
            *(str(PAPER[k]) for k in ("FP", "FN", "precision", "recall", "F1")),
            "553,366",
        ),
    ]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _cpus() -> int:
    import os

    return os.cpu_count() or 0
