"""A task's workflow, DeepLog's third part: which log key may follow which, with the paper's
constructs (sequence, branch, loop, concurrent steps), and where a session left it.

Built from normal sessions and the key model (``export/workflow.py``) and stored in the key
model version's metadata, so it speaks that version's keys; the client reads it from the
server with the rest of the metadata and places every log-key alert in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from export.contract.vocab import END, START


class EdgeKind(Enum):
    SEQUENCE = "sequence"  # the source's one successor
    BRANCH = "branch"  # one of the source's several successors
    LOOP = "loop"  # back to the source itself or to a step before it on the task's path
    CONCURRENT = "concurrent"  # the two keys also follow each other the other way round


@dataclass(frozen=True)
class Edge:
    source: int  # a key, or START
    target: int  # a key, or END
    count: int  # how often the target directly followed the source in the normal sessions
    share: float  # of the source's transitions
    kind: EdgeKind
    # The key model's mean probability of the target after histories ending at the source
    # (the normal sessions' positions); None where the model was not asked.
    predicted: float | None = None


@dataclass(frozen=True)
class Task:
    id: int
    keys: tuple[int, ...]  # in the order they first come, on average
    edges: tuple[Edge, ...]  # START and END included as source and target

    def successors(self, key: int) -> tuple[Edge, ...]:
        """The transitions the workflow allows from ``key``, the most common first."""
        return tuple(
            sorted((e for e in self.edges if e.source == key), key=lambda e: (-e.count, e.target))
        )

    def edge(self, source: int, target: int) -> Edge | None:
        return next((e for e in self.edges if e.source == source and e.target == target), None)


@dataclass(frozen=True)
class Divergence:
    """Where a session left its task's workflow: the state it was in (the key before the
    alerted one, START before the first), what the workflow allows from there, what came."""

    task: int
    last_normal: int
    allowed: tuple[Edge, ...]
    happened: int
    # The workflow has this transition too: the step is allowed here in general, and it was
    # the history before it (the key model's h keys) that made it unlikely.
    known_transition: bool


@dataclass(frozen=True)
class Workflow:
    tasks: tuple[Task, ...]

    def task_of(self, key: int) -> Task | None:
        return next((t for t in self.tasks if key in t.keys), None)

    def divergence(self, previous: int, happened: int) -> Divergence | None:
        """The divergence point of a step ``previous -> happened`` that the key model flagged;
        None when neither key belongs to a task (a workflow built without them)."""
        task = None if previous in (START, END) else self.task_of(previous)
        task = task or self.task_of(happened) or (self.tasks[0] if self.tasks else None)
        if task is None:
            return None
        return Divergence(
            task.id,
            previous,
            task.successors(previous),
            happened,
            task.edge(previous, happened) is not None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "tasks": [
                {
                    "id": t.id,
                    "keys": list(t.keys),
                    "edges": [
                        [e.source, e.target, e.count, e.share, e.kind.value, e.predicted]
                        for e in t.edges
                    ],
                }
                for t in self.tasks
            ]
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Workflow:
        return cls(
            tuple(
                Task(
                    t["id"],
                    tuple(t["keys"]),
                    tuple(
                        Edge(s, d, c, share, EdgeKind(kind), predicted)
                        for s, d, c, share, kind, predicted in t["edges"]
                    ),
                )
                for t in data["tasks"]
            )
        )
