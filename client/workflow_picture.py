"""A task's workflow drawn with Graphviz (``logad workflow``): its steps and transitions, each
construct in its own line style, and, for an alert, the path its session took up to the step
that left the workflow, that step, and what the workflow allowed there instead.

Styles: sequence and branch edges solid (a branch labelled with its share), loops dashed,
concurrent steps joined by a dotted double-headed line. The alert's path is blue, the step
that came instead red, the steps the workflow allowed green. A step the parameter-value model
flagged (the paper's slow VM-creation step) is filled orange and names the value that was out
of bounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from client.alerts import KeyAlert, ParamAlert
from export.contract.vocab import END, START, KeyVocabulary
from export.contract.workflow import EdgeKind, Task, Workflow

PATH_COLOUR, CAME_COLOUR, ALLOWED_COLOUR = "#1f5fbf", "#c62828", "#2e7d32"
FLAGGED_COLOUR, FLAGGED_FILL = "#ef6c00", "#ffe0b2"
TEMPLATE_CHARS = 48  # a node shows its template cut to this many characters
# Transitions rarer than this share of their source's are left out of the picture (a real
# task has dozens seen once or twice, and drawn they hide its shape); the alert's path and
# the steps allowed where it left the workflow are drawn whatever their share.
MIN_SHARE = 0.01


@dataclass(frozen=True)
class Highlight:
    """What to mark on the picture: an alert, and the keys its session had before it."""

    alert: KeyAlert
    session_keys: Sequence[int]  # the session's keys as stored with the alert


def draw(
    workflow: Workflow,
    vocabulary: KeyVocabulary,
    out: Path,
    task: int | None = None,
    highlight: Highlight | None = None,
    flagged: Sequence[ParamAlert] = (),
    min_share: float = MIN_SHARE,
) -> list[Path]:
    """Write ``out``.svg and ``out``.png; returns both paths. The task is the log-key
    alert's, else ``task``, else that of the first ``flagged`` step, else the first.
    ``flagged``: parameter-value alerts whose steps are marked; ``min_share``: see
    MIN_SHARE."""
    import graphviz  # the picture's dependency only

    if task is None and highlight is None and flagged:
        found = workflow.task_of(flagged[0].key.key)
        task = found.id if found is not None else None
    chosen = _task(workflow, task, highlight)
    values = {a.key.key: a for a in flagged}
    path_keys, path_steps, came, allowed = _marks(highlight)
    last = highlight.alert.workflow.last_normal.key if came is not None else None
    shown = [
        e
        for e in chosen.edges
        if e.share >= min_share
        or (e.source, e.target) in path_steps
        or (e.source == last and e.target in allowed)
    ]
    graph = graphviz.Digraph(
        f"task {chosen.id}",
        graph_attr={
            "rankdir": "TB",
            "fontname": "Helvetica",
            "label": _title(chosen, len(chosen.edges) - len(shown), min_share, highlight, flagged),
        },
        node_attr={"shape": "box", "style": "rounded", "fontname": "Helvetica", "fontsize": "10"},
        edge_attr={"fontname": "Helvetica", "fontsize": "9"},
    )
    for key in (START, *chosen.keys, END):
        attrs = {"color": PATH_COLOUR, "penwidth": "2"} if key in path_keys else {}
        if key == came:
            attrs |= {"color": CAME_COLOUR, "penwidth": "3"}
        elif key in allowed:
            attrs |= {"color": ALLOWED_COLOUR, "penwidth": "2"}
        label = _label(vocabulary, key)
        if key in values:
            attrs |= {"style": "rounded,filled", "fillcolor": FLAGGED_FILL}
            attrs.setdefault("color", FLAGGED_COLOUR)
            label += "\\n" + _out_of_bounds(values[key])
        shape = {"shape": "ellipse"} if key in (START, END) else {}
        graph.node(str(key), label, **shape, **attrs)
    drawn: set[tuple[int, int]] = set()
    for edge in shown:
        a, b = edge.source, edge.target
        if edge.kind is EdgeKind.CONCURRENT:
            if (b, a) in drawn:
                continue
            attrs = {"style": "dotted", "dir": "both", "label": "concurrent", "constraint": "false"}
        elif edge.kind is EdgeKind.LOOP:
            attrs = {"style": "dashed", "label": f"loop {edge.share:.2f}"}
        else:
            attrs = {"label": f"{edge.share:.2f}"} if edge.kind is EdgeKind.BRANCH else {}
        if (a, b) in path_steps:
            attrs |= {"color": PATH_COLOUR, "penwidth": "2.5"}
        elif a == last and b in allowed:
            attrs |= {"color": ALLOWED_COLOUR, "penwidth": "2"}
        graph.edge(str(a), str(b), **attrs)
        drawn.add((a, b))
    if came is not None and chosen.edge(last, came) is None:  # a step never taken here
        if came not in (START, *chosen.keys, END):
            graph.node(str(came), _label(vocabulary, came), color=CAME_COLOUR, penwidth="3")
        graph.edge(str(last), str(came), color=CAME_COLOUR, penwidth="3", label="came instead")
    out.parent.mkdir(parents=True, exist_ok=True)
    # render writes OUT.<format> (its .gv source removed) and returns that path
    return [Path(graph.render(out, format=fmt, cleanup=True)) for fmt in ("svg", "png")]


def _task(workflow: Workflow, task: int | None, highlight: Highlight | None) -> Task:
    if not workflow.tasks:
        raise ValueError("the workflow has no tasks")
    wanted = highlight.alert.workflow.task if highlight and highlight.alert.workflow else task
    if wanted is None:
        return workflow.tasks[0]
    found = next((t for t in workflow.tasks if t.id == wanted), None)
    if found is None:
        raise ValueError(f"no task {wanted}: the workflow has tasks 0-{len(workflow.tasks) - 1}")
    return found


def _marks(
    highlight: Highlight | None,
) -> tuple[set[int], set[tuple[int, int]], int | None, set[int]]:
    """(the keys and the transitions of the session's path before the alert, the step that
    came instead, the steps allowed there)."""
    if highlight is None or highlight.alert.workflow is None:
        return set(), set(), None, set()
    place = highlight.alert.workflow
    # The stored keys are those of the part the alert was raised in: for a session checked in
    # parts, the path drawn starts where that part did.
    keys = [START, *highlight.session_keys[: highlight.alert.position]]
    return set(keys), set(pairwise(keys)), place.happened.key, {r.key for r in place.allowed}


def _title(
    task: Task,
    hidden: int,
    min_share: float,
    highlight: Highlight | None,
    flagged: Sequence[ParamAlert],
) -> str:
    title = f"task {task.id}: {len(task.keys)} steps, {len(task.edges)} transitions"
    if hidden:
        title += f" ({hidden} under {min_share:.0%} of their step's not drawn)"
    if highlight is not None and highlight.alert.workflow is not None:
        alert = highlight.alert
        title += f"\\n{alert.session} key #{alert.position}: {alert.workflow.line()}"
    for alert in flagged:
        if alert.key.key in task.keys:
            title += (
                f"\\n{alert.session} line {alert.line}: {alert.key.name} {_out_of_bounds(alert)}"
            )
    return title


def _out_of_bounds(alert: ParamAlert) -> str:
    return (
        f"{alert.dimension}={alert.value:.4g} outside "
        f"[{alert.accepted_low:.4g}, {alert.accepted_high:.4g}]"
    )


def _label(vocabulary: KeyVocabulary, key: int) -> str:
    name, template = vocabulary.name(key), vocabulary.template(key)
    if key in (START, END):
        return name
    cut = template if len(template) <= TEMPLATE_CHARS else template[: TEMPLATE_CHARS - 3] + "..."
    return name + "\\n" + cut.replace("\\", "\\\\")
