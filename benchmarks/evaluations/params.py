"""DeepLog's parameter-value model evaluated the paper's way, through a running Triton server.

Train on normal data; then inject performance anomalies into held-out data at several
magnitudes and measure, per magnitude, the share of injected entries flagged (recall) next to
the share of entries flagged on the same held-out data left clean (false-positive rate).

- OpenStack (``loghub/OpenStack/OpenStack_2k.log``): the first 70% of the lines (by time) train,
  the rest is held out. Injected: slowed API requests (``time:`` multiplied) and delayed
  instance steps (the step, and the rest of its instance, moved later so that its gap is
  multiplied), each on 10% of the eligible held-out entries.
- The embedded workload: slow block writes (the transfer takes m times longer), generated with
  known truth; the clean held-out log is the same generator without anomalies.
"""

from __future__ import annotations

import json
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from client.formats import LogFormat, builtin
from client.ops.training import learn_corpus, train_and_publish_params
from client.ops.workload import WorkloadConfig, generate_workload
from client.param_detection import ParamAlert, ParamDetector, ParamModel, open_param_model
from client.parsing import LogParser
from client.triton_client import TritonClient
from export.deeplog_params import ParamModelConfig
from server_config.launcher import TritonServer

MAGNITUDES = (1.5, 2.0, 5.0, 10.0)
INJECT_SHARE = 0.1
REPEATS = 5  # OpenStack: independent injection draws per magnitude
_TIME_FIELD = re.compile(rb"time: (\d+\.\d+)")
_INSTANCE = re.compile(rb"\[instance: ([0-9a-f-]{36})\]")
_OPENSTACK_STAMP = "%Y-%m-%d %H:%M:%S.%f"


@dataclass(frozen=True)
class InjectionRow:
    dataset: str
    anomaly: str
    magnitude: float
    injected: int  # entries (OpenStack) or blocks (workload) with an injected anomaly
    recall: float
    false_positive_rate: float  # flagged share of checked entries on the clean held-out data
    clean_entries: int


def flagged_lines(
    lines: Sequence[bytes], model: ParamModel, log_format: LogFormat
) -> tuple[dict[int, ParamAlert], int]:
    """Run the parameter check over a log: (line number -> its alert, entries checked)."""
    parser = LogParser(log_format, templates=model.meta.vocabulary.templates, learn=False)
    detector = ParamDetector(model)
    alerts: list[ParamAlert] = []
    for line_no, raw in enumerate(lines, start=1):
        parsed = parser.parse(raw, line_no)
        if parsed is not None:
            alerts += detector.check_line(parsed, log_format)
    alerts += detector.flush()
    return {alert.line: alert for alert in alerts}, detector.checked


# --- OpenStack ---------------------------------------------------------------------------


def slow_requests(lines: list[bytes], factor: float, rng: np.random.Generator) -> tuple:
    """Multiply ``time:`` on a share of the API request lines; returns (lines, injected ids)."""
    eligible = [i for i, line in enumerate(lines) if _TIME_FIELD.search(line)]
    chosen = set(rng.choice(eligible, max(1, int(len(eligible) * INJECT_SHARE)), replace=False))
    out = list(lines)
    for i in chosen:
        out[i] = _TIME_FIELD.sub(
            lambda m: b"time: %.7f" % (float(m.group(1)) * factor), lines[i], count=1
        )
    return out, {i + 1 for i in chosen}


def delayed_steps(lines: list[bytes], factor: float, rng: np.random.Generator) -> tuple:
    """Move an instance step (and the rest of its instance) later, so its gap is x factor."""
    stamps = [_openstack_time(line) for line in lines]
    instances = [(found.group(1) if (found := _INSTANCE.search(line)) else None) for line in lines]
    last_of: dict[bytes, int] = {}
    eligible: list[tuple[int, float]] = []  # (line index, gap before it)
    for i, instance in enumerate(instances):
        if instance is None or stamps[i] is None:
            continue
        previous = last_of.get(instance)
        if previous is not None and stamps[i] - stamps[previous] > 0.05:
            eligible.append((i, stamps[i] - stamps[previous]))
        last_of[instance] = i
    picked = rng.choice(len(eligible), max(1, int(len(eligible) * INJECT_SHARE)), replace=False)
    shift = [0.0] * len(lines)
    for j in picked:
        i, gap = eligible[j]
        for k in range(i, len(lines)):
            if instances[k] == instances[i]:
                shift[k] += gap * (factor - 1)
    out = [
        _with_time(line, stamps[i] + shift[i]) if shift[i] else line for i, line in enumerate(lines)
    ]
    return out, {eligible[j][0] + 1 for j in picked}


def _openstack_time(line: bytes) -> float | None:
    """The line's time by the format's own clock; None for a line without an OpenStack header."""
    openstack = builtin("openstack")
    split = openstack.split(line.decode("utf-8", errors="replace"))
    return openstack.clock(split[0]) if split else None


def _with_time(line: bytes, seconds: float) -> bytes:
    parts = line.split(b" ", 3)
    when = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=seconds)
    stamp = when.strftime(_OPENSTACK_STAMP)[:-3]  # milliseconds, as OpenStack writes them
    date, clock = stamp.split(" ")
    return b" ".join([parts[0], date.encode(), clock.encode(), parts[3]])


def evaluate_openstack(
    triton: TritonClient, repository: Path, log: Path, config: ParamModelConfig, seed: int = 0
) -> list[InjectionRow]:
    lines = [line for line in log.read_bytes().splitlines() if line.strip()]
    order = np.argsort([_openstack_time(line) or 0.0 for line in lines], kind="stable")
    lines = [lines[i] for i in order]
    cut = int(len(lines) * 0.7)
    train, held_out = lines[:cut], lines[cut:]
    corpus = learn_corpus(train, builtin("openstack"))
    version = train_and_publish_params(corpus, repository, config)
    model = open_param_model(triton, version=version)
    clean, checked = flagged_lines(held_out, model, builtin("openstack"))
    fpr = len(clean) / max(checked, 1)
    rows = []
    # Each injection, and the dimension an alert must name to count as catching it.
    injections: dict[str, tuple[Callable, str]] = {
        "slowed API request (time x m)": (slow_requests, "time#"),
        "delayed instance step (gap x m)": (delayed_steps, "gap_s"),
    }
    for name, (inject, dimension) in injections.items():
        for magnitude in tqdm(MAGNITUDES, desc=f"openstack {name}", unit="magnitude"):
            injected_total, caught = 0, 0
            for repeat in range(REPEATS):  # few eligible entries: repeat with other draws
                rng = np.random.default_rng(seed + repeat)
                changed, injected = inject(held_out, magnitude, rng)
                flagged, _ = flagged_lines(changed, model, builtin("openstack"))
                injected_total += len(injected)
                caught += sum(
                    1
                    for i in injected
                    if i in flagged and flagged[i].dimension.startswith(dimension)
                )
            rows.append(
                InjectionRow(
                    "OpenStack_2k",
                    name,
                    magnitude,
                    injected_total,
                    caught / injected_total,
                    fpr,
                    checked,
                )
            )
    return rows


# --- the embedded workload -----------------------------------------------------------------


def evaluate_workload(
    triton: TritonClient, repository: Path, config: ParamModelConfig, seed: int = 0
) -> list[InjectionRow]:
    train = generate_workload(WorkloadConfig(blocks=1500, anomaly_rate=0.0, seed=seed))
    corpus = learn_corpus(train.lines, builtin("hdfs"))
    version = train_and_publish_params(corpus, repository, config)
    model = open_param_model(triton, version=version)
    clean_log = generate_workload(WorkloadConfig(blocks=600, anomaly_rate=0.0, seed=seed + 1))
    clean, checked = flagged_lines(clean_log.lines, model, builtin("hdfs"))
    fpr = len(clean) / max(checked, 1)
    rows = []
    for magnitude in tqdm(MAGNITUDES, desc="workload slow block write", unit="magnitude"):
        workload = generate_workload(
            WorkloadConfig(
                blocks=600,
                anomaly_rate=INJECT_SHARE,
                seed=seed + 2,
                slowdown=magnitude,
                anomaly_types=("slow_transfer",),
            )
        )
        flagged, _ = flagged_lines(workload.lines, model, builtin("hdfs"))
        slow = workload.anomalous_blocks
        caught = {a.session for a in flagged.values() if a.dimension == "gap_s"} & slow
        rows.append(
            InjectionRow(
                "workload (HDFS-like)",
                "slow block write (transfer x m)",
                magnitude,
                len(slow),
                len(caught) / len(slow),
                fpr,
                checked,
            )
        )
    return rows


def run_evaluation(
    repository: Path, openstack_log: Path | None, config: ParamModelConfig
) -> list[InjectionRow]:
    rows: list[InjectionRow] = []
    repository.mkdir(parents=True, exist_ok=True)
    with TritonServer(repository) as server:
        triton = TritonClient(server.grpc_url)
        rows += evaluate_workload(triton, repository, config)
        if openstack_log is not None:
            rows += evaluate_openstack(triton, repository, openstack_log, config)
        triton.close()
    return rows


def write_report(
    rows: list[InjectionRow], config: ParamModelConfig, path: Path, command: str, seconds: float
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        "| data | injected anomaly | magnitude m | injected | recall | FP rate on clean data |\n"
        "| --- | --- | ---: | ---: | ---: | ---: |\n"
    )
    body = "\n".join(
        f"| {r.dataset} | {r.anomaly} | {r.magnitude:g} | {r.injected} | {r.recall:.3f} | "
        f"{r.false_positive_rate:.4f} ({r.clean_entries:,} entries) |"
        for r in rows
    )
    text = f"""# DeepLog parameter-value model: injected performance anomalies, through Triton

Measured {when} on {platform.machine()}, {platform.system()}, CPU only, with `{command}`
({seconds:.0f} s in all). Model: h={config.window}, {config.layers} LSTM layers of
{config.hidden}, {config.epochs} epochs, bounds at {config.confidence:.1%} confidence (Gaussian
on validation errors, per key and dimension), served as ONNX by Triton.

{header}{body}

Recall: share of injected entries (OpenStack, {REPEATS} independent draws of {INJECT_SHARE:.0%} of
the eligible entries per magnitude) or injected blocks (workload) whose alert names the injected
dimension (`time` for slowed requests, `gap_s` for delays). FP rate: share of checked entries
with an alert on the same held-out data without injections; for each dataset it is the same for
every row.
"""
    path.write_text(text)
    path.with_suffix(".json").write_text(
        json.dumps(
            {
                "measured": when,
                "command": command,
                "config": asdict(config),
                "rows": [asdict(r) for r in rows],
            },
            indent=1,
        )
    )


def main_evaluation(repository: Path, data: Path, report: Path, config: ParamModelConfig) -> None:
    log = data / "loghub" / "OpenStack" / "OpenStack_2k.log"
    if not log.exists():
        print(f"note: {log} is missing; evaluating on the embedded workload only")
    start = time.perf_counter()
    rows = run_evaluation(repository, log if log.exists() else None, config)
    write_report(rows, config, report, "make eval-params", time.perf_counter() - start)
