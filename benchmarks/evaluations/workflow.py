"""DeepLog's workflow construction measured: ``python -m benchmarks evaluate-workflow``.

1. **Task separation with session ids hidden**, the paper's two ways side by side
   (``export/task_separation.py``), against the tasks the true sessions give:
   - OpenStack (``loghub/OpenStack/OpenStack_2k.log``, interleaved as it was logged): its
     keys are the ground-truth event ids (so parsing errors do not blur the figure); the
     truth is by VM instance (``[instance: uuid]``) and, finer, by API request
     (``[req-...]``; the few request ids that periodic tasks keep for hours are left out).
   - HDFS: ``hdfs/hdfs_train``'s 4,855 real block sessions. Its 2k raw sample cannot be used
     (2,194 of its 2,200 blocks have one line), and the preprocessed sessions carry no times,
     so they are interleaved here: blocks start as a Poisson process and each block's lines
     are spread over a random time, at several mean numbers of blocks open at once.
   A key's true task: keys belong together when each is in the same true sessions as the
   other on at least half of its sessions. Scored over pairs of keys (precision, recall of
   "in one task") and by the adjusted Rand index over the keys that have a truth; the
   agreement of the two methods is the Rand index between their tasks.
2. **Workflow edges against the true directly-follows graph**, per task:
   - ids known: the workflow ``publish`` stores, built from ``hdfs_train``, against the DFG
     of the 6,000 other normal sessions of ``robust_log_train.csv``;
   - ids hidden: each separated task's workflow, built from the interleaved log, against the
     DFG of the true sessions' steps in that task (START and END left out: without ids the
     log has no session boundaries).
3. **The demo's diagnosis**: ``make demo``'s run (its own work folder), per injected anomaly
   type, the share of first log-key alerts whose divergence point is the fault's step, and
   the pictures of one such alert and of one step the parameter model flagged.
"""

from __future__ import annotations

import csv
import json
import platform
import re
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from math import comb
from pathlib import Path

import numpy as np
from tqdm import tqdm

from client.ops.demo import DemoConfig, run_demo
from client.workflow_picture import draw
from export.contract.vocab import END, START, KeyVocabulary
from export.contract.workflow import Workflow
from export.deeplog_keys import KeyModelConfig, next_key_probabilities, train_key_model
from export.hdfs_data import data_dir, hdfs_vocabulary, read_key_sessions, read_labelled_sessions
from export.task_separation import (
    Linkage,
    co_occurrence_tasks,
    predicted_tasks,
    session_tasks,
)
from export.workflow import build_workflow, directly_follows

_INSTANCE = re.compile(r"\[instance: ([0-9a-f-]{36})\]")
# A request id on more lines than this is a periodic task's, kept for hours: not one request.
_REQUEST_LINES = 50


@dataclass(frozen=True)
class WorkflowEvalConfig:
    concurrency: tuple[float, ...] = (1, 2, 5, 20)  # HDFS: mean blocks open at once
    # The key model for predicted_tasks, trained on each half of the interleaved log and
    # asked about the other (a model asked about what it learnt by heart predicts everything).
    hdfs_model: KeyModelConfig = field(
        default_factory=lambda: KeyModelConfig(top_g=1, hidden=32, epochs=3, end_marker=False)
    )
    openstack_model: KeyModelConfig = field(
        default_factory=lambda: KeyModelConfig(
            top_g=1, hidden=32, epochs=50, batch_size=64, end_marker=False
        )
    )
    demo: DemoConfig = field(
        default_factory=lambda: DemoConfig(workdir=Path("build/eval-workflow"))
    )
    run_demo: bool = True
    seed: int = 0
    reports: Path = Path("reports")


@dataclass(frozen=True)
class Method:
    name: str
    tasks: list[tuple[int, ...]]
    seconds: float


@dataclass(frozen=True)
class SeparationRow:
    dataset: str
    truth: str
    truth_tasks: int
    method: str  # with its setting where not the default
    tasks: int
    pair_precision: float | None
    pair_recall: float
    ari: float | None
    seconds: float | None = None  # the default setting's run; a grid point's is not timed


@dataclass(frozen=True)
class EdgeRow:
    dataset: str
    setting: str
    task: str  # its keys, first few
    edges: int
    truth_edges: int
    precision: float
    recall: float


@dataclass
class WorkflowReport:
    separation: list[SeparationRow] = field(default_factory=list)
    sensitivity: list[SeparationRow] = field(default_factory=list)  # other settings
    agreement: dict[str, float] = field(default_factory=dict)  # dataset -> ARI (a) vs (b)
    edges: list[EdgeRow] = field(default_factory=list)
    divergence_at_fault: dict[str, list[int]] = field(default_factory=dict)
    pictures: list[str] = field(default_factory=list)
    tasks_found: dict[str, list[list[str]]] = field(default_factory=dict)


def interleave(
    sessions: Sequence[Sequence[int]], concurrency: float, seed: int = 0
) -> tuple[list[int], list[int]]:
    """One log of ``sessions``' keys as many of them would write it at once: a session starts
    every 1 time unit on average (Poisson), and its keys come at exponential gaps whose mean
    keeps ``concurrency`` sessions open on average. Returns (keys, the session of each)."""
    rng = np.random.default_rng(seed)
    mean_length = float(np.mean([len(s) for s in sessions]))
    starts = np.cumsum(rng.exponential(1.0, len(sessions)))
    times, owners, keys = [], [], []
    for i, (start, session) in enumerate(zip(starts, sessions, strict=True)):
        times.append(start + np.cumsum(rng.exponential(concurrency / mean_length, len(session))))
        owners.append(np.full(len(session), i))
        keys.append(np.asarray(session))
    order = np.argsort(np.concatenate(times), kind="stable")
    return np.concatenate(keys)[order].tolist(), np.concatenate(owners)[order].tolist()


def adjusted_rand_index(a: Sequence[int], b: Sequence[int]) -> float:
    """Hubert and Arabie's adjusted Rand index of two labellings of the same items: 1 for the
    same partition, about 0 for unrelated ones."""
    pairs = comb(len(a), 2)
    both = sum(comb(n, 2) for n in Counter(zip(a, b, strict=True)).values())
    in_a = sum(comb(n, 2) for n in Counter(a).values())
    in_b = sum(comb(n, 2) for n in Counter(b).values())
    expected = in_a * in_b / pairs if pairs else 0.0
    top = (in_a + in_b) / 2
    return 1.0 if top == expected else (both - expected) / (top - expected)


def score_separation(
    found: Sequence[Sequence[int]], truth: Sequence[Sequence[int]], keys: Sequence[int]
) -> tuple[float | None, float, float | None]:
    """(pair precision, pair recall, ARI) of ``found`` tasks against ``truth`` over ``keys``.
    A key outside every true task (no session holds it) counts as apart from the true
    tasks' keys; pairs of two such keys are not scored. Precision is None where no two keys
    were put together, the ARI None where the truth is a single task (any split of it is as
    far from it as chance then, and the index says nothing)."""
    task_of = {k: i for i, t in enumerate(found) for k in t}
    true_of = {k: i for i, t in enumerate(truth) for k in t}
    tp = fp = fn = 0
    for a, b in combinations(sorted(set(keys)), 2):
        if a not in true_of and b not in true_of:
            continue
        together = task_of.get(a, -1 - a) == task_of.get(b, -1 - b)
        truly = a in true_of and true_of[a] == true_of.get(b)
        tp += together and truly
        fp += together and not truly
        fn += truly and not together
    with_truth = [k for k in sorted(set(keys)) if k in true_of]
    ari = (
        adjusted_rand_index(
            [task_of.get(k, -1 - k) for k in with_truth], [true_of[k] for k in with_truth]
        )
        if len(truth) > 1
        else None
    )
    return (tp / (tp + fp) if tp + fp else None), tp / max(tp + fn, 1), ari


def cross_fitted_probabilities(
    stream: list[int], vocab_size: int, config: KeyModelConfig
) -> np.ndarray:
    """The key model's probability of each key of ``stream`` after the keys before it, from a
    model trained on the other half of the stream."""
    half = len(stream) // 2
    parts = stream[:half], stream[half:]
    out = []
    for asked, learnt in ((parts[0], parts[1]), (parts[1], parts[0])):
        model, _ = train_key_model([learnt], vocab_size, config, progress=False)
        out.append(next_key_probabilities(model, [asked], config.window, False)[0])
    return np.concatenate(out)


# The settings the sensitivity table tries beside each method's defaults.
CO_OCCURRENCE_GRID = [(d, t) for d in (2, 3, 5) for t in (0.3, 0.5, 0.7)]
PREDICTED_GRID = [(v, t) for v in (0.0, 0.1, 0.3) for t in (0.3, 0.5, 0.7)]


def separate(
    stream: list[int], vocab_size: int, model: KeyModelConfig
) -> tuple[list[Method], np.ndarray]:
    """Both methods (co-occurrence with both linkages) on one interleaved log at their
    defaults, timed; and the key model's probabilities, for the other settings."""
    methods = []
    for linkage in Linkage:
        start = time.perf_counter()
        tasks = co_occurrence_tasks([stream], linkage=linkage)
        methods.append(
            Method(f"co-occurrence, {linkage.value}", tasks, time.perf_counter() - start)
        )
    start = time.perf_counter()
    probabilities = cross_fitted_probabilities(stream, vocab_size, model)
    tasks = predicted_tasks([stream], [probabilities])
    methods.append(Method("key model predictions", tasks, time.perf_counter() - start))
    return methods, probabilities


def sensitivity(
    dataset: str,
    stream: list[int],
    probabilities: np.ndarray,
    truth_name: str,
    truth: list[tuple[int, ...]],
) -> list[SeparationRow]:
    """The mutual co-occurrence and the key model's separation at the grid's settings."""
    tried = [
        (
            f"co-occurrence, mutual, d={d}, t={t}",
            co_occurrence_tasks([stream], d, t, Linkage.MUTUAL),
        )
        for d, t in CO_OCCURRENCE_GRID
    ] + [
        (f"key model predictions, v={v}, t={t}", predicted_tasks([stream], [probabilities], v, t))
        for v, t in PREDICTED_GRID
    ]
    return [
        SeparationRow(
            dataset,
            truth_name,
            len(truth),
            name,
            len(tasks),
            *score_separation(tasks, truth, stream),
        )
        for name, tasks in tried
    ]


def hidden_id_edges(
    dataset: str,
    method: Method,
    stream: list[int],
    sessions: Sequence[Sequence[int]],
    names: KeyVocabulary,
) -> list[EdgeRow]:
    """Per separated task of two keys or more: its workflow from the interleaved log (the
    task's keys in log order, one sequence) against the true sessions' DFG of those keys."""
    rows = []
    for task in method.tasks:
        if len(task) < 2:
            continue
        members = set(task)
        workflow = _hidden_id_workflow(stream, task)
        built = {(e.source, e.target) for e in workflow.tasks[0].edges} - _boundary_edges(task)
        truth = set(directly_follows([[k for k in s if k in members] for s in sessions]))
        truth -= _boundary_edges(task)
        if truth:
            rows.append(_edge_row(dataset, f"ids hidden, {method.name}", task, built, truth, names))
    return rows


def _hidden_id_workflow(stream: list[int], task: Sequence[int]) -> Workflow:
    """A separated task's workflow with ids hidden: its keys in log order, one sequence."""
    members = set(task)
    return build_workflow([[k for k in stream if k in members]], tasks=[tuple(task)])


def _boundary_edges(task: Sequence[int]) -> set[tuple[int, int]]:
    return {(START, k) for k in task} | {(k, END) for k in task}


def _edge_row(
    dataset: str,
    setting: str,
    task: Sequence[int],
    built: set[tuple[int, int]],
    truth: set[tuple[int, int]],
    names: KeyVocabulary,
) -> EdgeRow:
    hit = len(built & truth)
    shown = " ".join(names.name(k) for k in task[:6]) + (" ..." if len(task) > 6 else "")
    return EdgeRow(
        dataset, setting, shown, len(built), len(truth), hit / max(len(built), 1), hit / len(truth)
    )


def evaluate_openstack(config: WorkflowEvalConfig, report: WorkflowReport) -> None:
    path = data_dir().parent / "loghub" / "OpenStack" / "OpenStack_2k.log_structured.csv"
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    events = sorted({r["EventId"] for r in rows}, key=lambda e: int(e[1:]))
    templates = {r["EventId"]: r["EventTemplate"] for r in rows}
    vocabulary = KeyVocabulary(tuple(events), tuple(templates[e] for e in events))
    stream = [vocabulary.key_of_name(r["EventId"]) for r in rows]
    by_instance: defaultdict[str, list[int]] = defaultdict(list)
    by_request: defaultdict[str, list[int]] = defaultdict(list)
    for key, row in zip(stream, rows, strict=True):
        if found := _INSTANCE.search(row["Content"]):
            by_instance[found[1]].append(key)
        if row["ADDR"].startswith("req-"):
            by_request[row["ADDR"].split()[0]].append(key)
    requests = [s for s in by_request.values() if len(s) <= _REQUEST_LINES]
    truths = {"instances": list(by_instance.values()), "requests": requests}
    methods = _measure(
        "OpenStack", stream, truths, "requests", vocabulary, config.openstack_model, report
    )
    # The picture: VM creation as separated with ids hidden, the narrowest task either
    # method put its first step ("Attempting claim") in.
    claim = vocabulary.key_of_name("E1")
    task = min((t for m in methods for t in m.tasks if claim in t), key=len)
    out = config.reports / "workflow_openstack_create"
    report.pictures += [str(p) for p in draw(_hidden_id_workflow(stream, task), vocabulary, out)]


def evaluate_hdfs(config: WorkflowEvalConfig, report: WorkflowReport) -> None:
    raw = list(read_key_sessions(data_dir() / "hdfs_train"))
    vocabulary = hdfs_vocabulary(raw)
    sessions = [[vocabulary.key_of_name(k) for k in s] for s in raw]
    for concurrency in tqdm(config.concurrency, desc="HDFS interleavings", unit="level"):
        stream, _ = interleave(sessions, concurrency, config.seed)
        dataset = f"HDFS, {concurrency:g} open"
        truths = {"blocks": sessions}
        _measure(dataset, stream, truths, "blocks", vocabulary, config.hdfs_model, report)
    # ids known: the workflow publish stores, against other normal sessions' DFG.
    workflow = build_workflow(sessions)
    held_out = [
        [vocabulary.key_of_name(k) for k in s]
        for s, label in read_labelled_sessions(data_dir() / "robust_log_train.csv")
        if label == 0
    ]
    setting = f"ids known: hdfs_train's workflow vs {len(held_out):,} other normal sessions"
    for task in workflow.tasks:
        members = set(task.keys)
        built = {(e.source, e.target) for e in task.edges}
        truth_dfg = set(directly_follows([[k for k in s if k in members] for s in held_out]))
        report.edges.append(_edge_row("HDFS", setting, task.keys, built, truth_dfg, vocabulary))
    out = config.reports / "workflow_hdfs"
    report.pictures += [str(p) for p in draw(workflow, vocabulary, out)]


def _measure(
    dataset: str,
    stream: list[int],
    truths: dict[str, list[list[int]]],
    main_truth: str,
    vocabulary: KeyVocabulary,
    model: KeyModelConfig,
    report: WorkflowReport,
) -> list[Method]:
    """Both methods on one interleaved log, scored against each truth (the sensitivity grid
    and the workflow edges against ``main_truth``'s sessions); returns the methods."""
    methods, probabilities = separate(stream, vocabulary.size, model)
    for truth_name, sessions in truths.items():
        truth = session_tasks(sessions)
        for method in methods:
            report.separation.append(
                SeparationRow(
                    dataset,
                    truth_name,
                    len(truth),
                    method.name,
                    len(method.tasks),
                    *score_separation(method.tasks, truth, stream),
                    method.seconds,
                )
            )
        if truth_name == main_truth:
            report.sensitivity += sensitivity(dataset, stream, probabilities, truth_name, truth)
    for method in methods:
        report.tasks_found[f"{dataset}, {method.name}"] = [
            [vocabulary.name(k) for k in t] for t in method.tasks
        ]
        report.edges += hidden_id_edges(dataset, method, stream, truths[main_truth], vocabulary)
    keys = sorted(set(stream))

    def labels(tasks: list[tuple[int, ...]]) -> list[int]:
        of = {k: i for i, t in enumerate(tasks) for k in t}
        return [of[k] for k in keys]

    mutual, predicted = methods[1], methods[2]
    report.agreement[dataset] = adjusted_rand_index(labels(mutual.tasks), labels(predicted.tasks))
    return methods


def evaluate_demo(config: WorkflowEvalConfig, report: WorkflowReport) -> None:
    result = run_demo(config.demo)
    report.divergence_at_fault = result["divergence_at_fault"]
    for name in ("workflow_alert", "workflow_slow_step"):
        picture = config.demo.workdir / f"{name}.png"
        if picture.is_file():
            shutil.copy(picture, config.reports / f"{name}.png")
            report.pictures.append(str(config.reports / f"{name}.png"))


def run_workflow_evaluation(config: WorkflowEvalConfig) -> WorkflowReport:
    config.reports.mkdir(parents=True, exist_ok=True)
    report = WorkflowReport()
    started = time.perf_counter()
    evaluate_openstack(config, report)
    evaluate_hdfs(config, report)
    if config.run_demo:
        evaluate_demo(config, report)
    (config.reports / "workflow.json").write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
                "seconds": round(time.perf_counter() - started, 1),
                **asdict(report),
            },
            indent=1,
        )
    )
    (config.reports / "workflow.md").write_text(render(report))
    print((config.reports / "workflow.md").read_text())
    return report


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _sensitivity_table(rows: list[SeparationRow]) -> list[str]:
    datasets = list(dict.fromkeys(r.dataset for r in rows))
    settings = list(dict.fromkeys(r.method for r in rows))
    cell = {(r.method, r.dataset): r for r in rows}
    out = [
        "| setting | " + " | ".join(f"{d} ({cell[settings[0], d].truth})" for d in datasets) + " |",
        "|---|" + "---:|" * len(datasets),
    ]
    for setting in settings:
        figures = []
        for d in datasets:
            r = cell[setting, d]
            precision = "n/a" if r.pair_precision is None else f"{r.pair_precision:.2f}"
            figures.append(f"{_figure(r.ari)} ({precision}/{r.pair_recall:.2f})")
        out.append(f"| {setting} | " + " | ".join(figures) + " |")
    return out


def render(report: WorkflowReport) -> str:
    lines = [
        "# DeepLog workflow construction (`make eval-workflow`)",
        "",
        "How the figures are made: `benchmarks/evaluations/workflow.py` (its docstring).",
        "",
        "## Task separation, session ids hidden",
        "",
        "| log | truth (tasks) | method | tasks found | pair precision | pair recall | ARI | s |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in report.separation:
        lines.append(
            f"| {r.dataset} | {r.truth} ({r.truth_tasks}) | {r.method} | {r.tasks} | "
            f"{_figure(r.pair_precision)} | {r.pair_recall:.3f} | {_figure(r.ari)} | "
            f"{r.seconds:.2f} |"
        )
    lines += [
        "",
        "n/a: no two keys put in one task (precision), or a truth of one task (the ARI of any "
        "split of one task is 0). The agreement of the two methods, the ARI between the mutual "
        "co-occurrence tasks and the key model's over all keys (1 where both leave every key "
        "alone):",
        "",
        *[f"- {d}: {a:.3f}" for d, a in report.agreement.items()],
        "",
        "### How much the settings matter",
        "",
        "ARI (pair precision/recall) at other settings; the defaults are co-occurrence d=3, "
        "t=0.5 and key model v=0.0 (a divergence point: a key the model found no likelier than "
        "chance), t=0.5. d: distance, t: threshold, v: how far above chance a key must be "
        "predicted to continue a stretch.",
        "",
        *_sensitivity_table(report.sensitivity),
        "",
        "## Workflow edges against the true directly-follows graph",
        "",
        "| log | setting | task | edges | true edges | precision | recall |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for e in report.edges:
        lines.append(
            f"| {e.dataset} | {e.setting} | {e.task} | {e.edges} | {e.truth_edges} | "
            f"{e.precision:.3f} | {e.recall:.3f} |"
        )
    if report.divergence_at_fault:
        lines += [
            "",
            "## The demo's injected anomalies: the divergence point against the fault",
            "",
            "| anomaly type | first log-key alerts naming the fault's step |",
            "|---|---:|",
            *[
                f"| {kind} | {hit} of {n} ({hit / max(n, 1):.0%}) |"
                for kind, (hit, n) in sorted(report.divergence_at_fault.items())
            ],
        ]
    lines += ["", "## Tasks found", ""]
    for where, tasks in report.tasks_found.items():
        lines.append(f"- {where}: " + " | ".join(" ".join(t) for t in tasks))
    lines += ["", "Pictures: " + ", ".join(p for p in report.pictures if p.endswith(".png")), ""]
    return "\n".join(lines)
