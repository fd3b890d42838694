"""Separating the tasks of an interleaved log: which log keys belong to one task (DeepLog,
section 4.1). The paper's two ways, for logs whose lines carry no session id:

- ``co_occurrence_tasks``: density-based clustering of key co-occurrence within a distance
  window. Needs only the keys.
- ``predicted_tasks``: from the key model's predictions. A key the model predicts after its
  history continues what came before; a key it predicts no better than chance is a divergence
  point, where another task starts or another interleaved task's step comes. The stretches
  between divergence points then stand in for the sessions that ids would give, and keys are
  grouped as ``session_tasks`` groups them, whichever order they come in (so concurrent
  steps, which follow each other both ways, land in one task).

``session_tasks`` groups keys by the sessions that hold them: what ``predicted_tasks`` does
with its stretches, and the truth the methods are measured against in ``make eval-workflow``
(publishing, where ids tell sessions apart, uses co-occurrence, one way). All return tasks as
tuples of keys, keys and tasks in the order they first appear.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from enum import Enum
from itertools import combinations

import numpy as np


class Linkage(Enum):
    """When co-occurrence links two keys."""

    # The paper's rule: b comes within the distance on at least the threshold share of a's
    # occurrences. Right for sessions (a sequence is one task instance); in an interleaved
    # log a key that is half of the log comes near everything and joins every task into one.
    ONE_WAY = "one-way"
    # Both ways, each measured above what chance gives (``above_chance``): for interleaved
    # logs. A frequent key then links only to keys it really keeps company with.
    MUTUAL = "mutual"


def above_chance(share: float, chance: float) -> float:
    """How far ``share`` (how often b came near a, or how likely the model found a key) is
    above what chance alone gives: 0 at chance, 1 when always. For a rare key it is about the
    share itself."""
    return (share - chance) / (1.0 - chance) if chance < 1.0 else 0.0


def co_occurrence_tasks(
    sequences: Sequence[Sequence[int]],
    distance: int = 3,
    threshold: float = 0.5,
    linkage: Linkage = Linkage.ONE_WAY,
) -> list[tuple[int, ...]]:
    """Keys grouped into tasks: two keys are linked when one comes within ``distance``
    positions of the other (either side, in the same sequence) often enough (``linkage``,
    ``threshold``); tasks are the linked groups (single linkage). A sequence is a session, or
    a whole interleaved log when no ids tell sessions apart."""
    occurrences: Counter[int] = Counter()
    near: Counter[tuple[int, int]] = Counter()
    for sequence in sequences:
        keys = list(sequence)
        occurrences.update(keys)
        for p, key in enumerate(keys):
            around = set(keys[max(0, p - distance) : p]) | set(keys[p + 1 : p + 1 + distance])
            for other in around - {key}:
                near[key, other] += 1
    total = sum(occurrences.values())

    def share(a: int, b: int) -> float:
        observed = near[a, b] / occurrences[a]
        if linkage is Linkage.ONE_WAY:
            return observed
        # the chance that b is among the 2 x distance keys around an occurrence of a
        return above_chance(observed, 1.0 - (1.0 - occurrences[b] / total) ** (2 * distance))

    links = [
        (a, b)
        for a, b in near
        if share(a, b) >= threshold and (linkage is Linkage.ONE_WAY or share(b, a) >= threshold)
    ]
    return _linked_groups(sequences, links)


def session_tasks(sessions: Sequence[Sequence[int]], share: float = 0.5) -> list[tuple[int, ...]]:
    """Keys grouped into tasks by the sessions that hold them: two keys are linked when each
    is in the same sessions as the other on at least ``share`` of the sessions it is in; tasks
    are the linked groups. A key that only some sessions have (a block that is also read) is
    a task of its own unless it keeps company with others."""
    holders: defaultdict[int, set[int]] = defaultdict(set)
    for i, session in enumerate(sessions):
        for key in session:
            holders[key].add(i)
    links = []
    for a, b in combinations(holders, 2):
        both = len(holders[a] & holders[b])
        if both >= share * len(holders[a]) and both >= share * len(holders[b]):
            links.append((a, b))
    return _linked_groups(sessions, links)


def predicted_tasks(
    sequences: Sequence[Sequence[int]],
    probabilities: Sequence[np.ndarray],
    divergence: float = 0.0,
    threshold: float = 0.5,
) -> list[tuple[int, ...]]:
    """Keys grouped into tasks by the key model. ``probabilities[s][p]`` is the model's
    probability of key ``p`` of sequence ``s`` after the keys before it; where no ids tell
    sessions apart the model is one trained on the interleaved log itself, and its
    probabilities are best taken on a part of the log it was not trained on (a model that
    learnt the log by heart predicts every key).

    A key is a divergence point where the model found it no more than ``divergence`` above
    chance (its share of the log; 0: no likelier than chance); the sequences are cut there,
    and the stretches grouped as sessions are (``session_tasks`` at ``threshold``)."""
    return session_tasks(list(_stretches(sequences, probabilities, divergence)), threshold)


def _stretches(
    sequences: Sequence[Sequence[int]], probabilities: Sequence[np.ndarray], divergence: float
) -> Iterable[list[int]]:
    """The sequences cut before every divergence point (see ``predicted_tasks``)."""
    occurrences: Counter[int] = Counter(k for s in sequences for k in s)
    total = sum(occurrences.values())
    for keys, probs in zip(sequences, probabilities, strict=True):
        stretch: list[int] = []
        for key, prob in zip(keys, probs, strict=False):
            if stretch and above_chance(float(prob), occurrences[key] / total) <= divergence:
                yield stretch
                stretch = []
            stretch.append(key)
        if stretch:
            yield stretch


def _linked_groups(
    sequences: Iterable[Sequence[int]], links: Iterable[tuple[int, int]]
) -> list[tuple[int, ...]]:
    """The connected groups of keys under ``links`` (union-find), every key of the sequences
    in one; keys and groups in the order of first appearance."""
    first_seen = dict.fromkeys(k for sequence in sequences for k in sequence)
    parent = {k: k for k in first_seen}

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a, b in links:
        parent[root(a)] = root(b)
    groups: defaultdict[int, list[int]] = defaultdict(list)
    for key in first_seen:  # dicts keep insertion order: first appearance
        groups[root(key)].append(key)
    return [tuple(g) for g in groups.values()]
