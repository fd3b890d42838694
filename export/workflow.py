"""Building DeepLog's workflow model (``export/contract/workflow.py``) from normal sessions.

Two steps, as in the paper (section 4):
- **Tasks**: which keys belong to one task (``export/task_separation.py``); by default the
  co-occurrence clustering, which needs no session ids.
- **Workflow per task**: the directly-follows transitions of the task's keys in the sessions,
  each given its construct (sequence, branch, loop, concurrent) and the key model's mean
  probability of it, so the workflow is the model's view of the task as well as the data's.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from export.contract.vocab import END, START
from export.contract.workflow import Edge, EdgeKind, Task, Workflow
from export.task_separation import co_occurrence_tasks

# Two keys that follow each other both ways are concurrent steps when the rarer order is at
# least this share of the commoner one (below it, the rare order is a loop or noise) and no
# instance goes from one to the other and back (a b a: that is a loop over them).
CONCURRENCY_SHARE = 0.1


def build_workflow(
    sessions: Sequence[Sequence[int]],
    probabilities: Sequence[np.ndarray] | None = None,
    tasks: Sequence[Sequence[int]] | None = None,
) -> Workflow:
    """The workflow of each task over normal ``sessions``.

    ``probabilities[s][p]``, where given, is the key model's probability of key ``p`` of
    session ``s`` after the keys before it (position ``len(session)``: of END); ``tasks``
    default to ``co_occurrence_tasks`` of the sessions."""
    sessions = [list(s) for s in sessions]
    tasks = co_occurrence_tasks(sessions) if tasks is None else tasks
    predicted = _predicted(sessions, probabilities) if probabilities is not None else {}
    return Workflow(
        tuple(_task(i, tuple(keys), sessions, predicted) for i, keys in enumerate(tasks))
    )


def directly_follows(instances: Sequence[Sequence[int]]) -> Counter[tuple[int, int]]:
    """Transition counts of task instances, START before each and END after it: the
    directly-follows graph that a workflow's edges are compared with."""
    counts: Counter[tuple[int, int]] = Counter()
    for keys in instances:
        if keys:
            path = [START, *keys, END]
            counts.update(pairwise(path))
    return counts


def _predicted(
    sessions: list[list[int]], probabilities: Sequence[np.ndarray]
) -> dict[tuple[int, int], float]:
    sums: defaultdict[tuple[int, int], list[float]] = defaultdict(list)
    for keys, probs in zip(sessions, probabilities, strict=True):
        path = [START, *keys, END]
        for p in range(min(len(probs), len(path) - 1)):
            sums[path[p], path[p + 1]].append(float(probs[p]))
    return {pair: float(np.mean(v)) for pair, v in sums.items()}


def _task(
    task_id: int,
    keys: tuple[int, ...],
    sessions: list[list[int]],
    predicted: dict[tuple[int, int], float],
) -> Task:
    members = set(keys)
    instances = [[k for k in s if k in members] for s in sessions]
    instances = [i for i in instances if i]
    counts = directly_follows(instances)
    order = _mean_first_position(instances)
    before = _first_before(instances)
    rank = {START: -1.0, END: float("inf"), **order}
    out: Counter[int] = Counter()
    for (a, _), c in counts.items():
        out[a] += c
    returns = {
        pair
        for keys in instances
        for x, y, z in zip(keys, keys[1:], keys[2:], strict=False)
        if x == z != y
        for pair in ((x, y), (y, x))
    }

    def concurrent(a: int, b: int) -> bool:
        back = counts.get((b, a), 0)
        if a == b or START in (a, b) or END in (a, b) or not back or (a, b) in returns:
            return False
        there = counts[a, b]
        return min(there, back) >= CONCURRENCY_SHARE * max(there, back)

    kinds: dict[tuple[int, int], EdgeKind] = {}
    for a, b in counts:
        if concurrent(a, b):
            kinds[a, b] = EdgeKind.CONCURRENT
        elif a == b or _comes_first(b, a, before):
            kinds[a, b] = EdgeKind.LOOP
    forward = Counter(a for (a, b) in counts if (a, b) not in kinds)
    edges = tuple(
        Edge(
            a,
            b,
            c,
            round(c / out[a], 6),
            kinds.get((a, b), EdgeKind.BRANCH if forward[a] > 1 else EdgeKind.SEQUENCE),
            None if (a, b) not in predicted else round(predicted[a, b], 6),
        )
        for (a, b), c in sorted(counts.items(), key=lambda e: (rank[e[0][0]], -e[1], e[0][1]))
    )
    return Task(task_id, tuple(sorted(members, key=lambda k: rank.get(k, 0.0))), edges)


def _first_before(instances: list[list[int]]) -> Counter[tuple[int, int]]:
    """(x, y) -> in how many instances x first came before y first did."""
    before: Counter[tuple[int, int]] = Counter()
    for keys in instances:
        firsts = list(dict.fromkeys(keys))
        before.update((x, y) for i, x in enumerate(firsts) for y in firsts[i + 1 :])
    return before


def _comes_first(b: int, a: int, before: Counter[tuple[int, int]]) -> bool:
    """Whether step ``b`` comes before step ``a`` in the task (START first, END last): then an
    edge a -> b goes back to an earlier step, a loop."""
    if b == START or a == END:
        return True
    if a == START or b == END:
        return False
    return before[b, a] > before[a, b]


def _mean_first_position(instances: list[list[int]]) -> dict[int, float]:
    """Each key's mean relative position of first appearance in the instances holding it:
    what orders a task's steps, and tells a loop's edge (back to an earlier step)."""
    firsts: defaultdict[int, list[float]] = defaultdict(list)
    for keys in instances:
        seen: set[int] = set()
        for p, k in enumerate(keys):
            if k not in seen:
                seen.add(k)
                firsts[k].append(p / max(1, len(keys) - 1))
    return {k: float(np.mean(v)) for k, v in firsts.items()}
