"""DeepLog's workflow model: tasks separated without ids (key co-occurrence, the key model's
predictions), each task's constructs, and where a flagged step left the workflow."""

from itertools import pairwise

import numpy as np

from export.contract.vocab import END, START
from export.contract.workflow import EdgeKind, Workflow
from export.task_separation import Linkage, co_occurrence_tasks, predicted_tasks
from export.workflow import build_workflow, directly_follows


def _kinds(workflow: Workflow) -> dict[tuple[int, int], EdgeKind]:
    return {(e.source, e.target): e.kind for t in workflow.tasks for e in t.edges}


def test_a_fixed_order_of_steps_is_a_sequence():
    kinds = _kinds(build_workflow([[3, 4, 5]] * 10))
    assert kinds == {
        (START, 3): EdgeKind.SEQUENCE,
        (3, 4): EdgeKind.SEQUENCE,
        (4, 5): EdgeKind.SEQUENCE,
        (5, END): EdgeKind.SEQUENCE,
    }


def test_several_successors_are_branches_with_their_shares():
    workflow = build_workflow([[3, 4, 6]] * 3 + [[3, 5, 6]])
    kinds = _kinds(workflow)
    assert kinds[3, 4] is kinds[3, 5] is EdgeKind.BRANCH
    assert kinds[4, 6] is EdgeKind.SEQUENCE
    shares = {e.target: e.share for e in workflow.tasks[0].successors(3)}
    assert shares == {4: 0.75, 5: 0.25}


def test_a_repeated_step_and_a_return_to_an_earlier_one_are_loops():
    kinds = _kinds(build_workflow([[3, 4, 4, 4, 5], [3, 4, 5], [3, 4, 5, 4, 5]]))
    assert kinds[4, 4] is EdgeKind.LOOP
    assert kinds[5, 4] is EdgeKind.LOOP
    assert kinds[4, 5] is EdgeKind.SEQUENCE or kinds[4, 5] is EdgeKind.BRANCH


def test_steps_that_come_in_either_order_are_concurrent_not_a_loop():
    kinds = _kinds(build_workflow([[3, 4, 5, 6], [3, 5, 4, 6]] * 5))
    assert kinds[4, 5] is kinds[5, 4] is EdgeKind.CONCURRENT
    assert kinds[3, 4] is kinds[3, 5] is EdgeKind.BRANCH


def test_the_key_model_s_probability_of_each_transition_is_kept_on_its_edge():
    sessions = [[3, 4], [3, 4]]
    probabilities = [np.array([0.9, 0.5, 0.8]), np.array([0.7, 0.3, 0.6])]
    edges = {
        (e.source, e.target): e for e in build_workflow(sessions, probabilities).tasks[0].edges
    }
    assert edges[START, 3].predicted == 0.8
    assert edges[3, 4].predicted == 0.4
    assert edges[4, END].predicted == 0.7


def _interleaved(rng: np.random.Generator, tasks: list[list[int]], instances: int) -> list[int]:
    """Instances of the tasks one after another, each overlapping the next a third of the
    time (their keys shuffled together, each instance's own order kept)."""
    stream: list[int] = []
    pending: list[int] = []
    for _ in range(instances):
        keys = list(tasks[rng.integers(len(tasks))])
        if pending and rng.random() < 1 / 3:
            merged, a, b = [], pending, keys
            while a or b:
                source = a if (a and (not b or rng.random() < 0.5)) else b
                merged.append(source.pop(0))
            stream += merged
            pending = []
        else:
            stream += pending
            pending = keys
    return stream + pending


def test_interleaved_tasks_without_ids_are_separated_by_key_co_occurrence():
    truth = [[3, 4, 5, 6], [10, 11, 12], [20, 21, 22, 23, 24]]
    stream = _interleaved(np.random.default_rng(7), truth, 600)
    found = co_occurrence_tasks([stream], distance=2, threshold=0.5)
    assert sorted(sorted(t) for t in found) == sorted(truth)


def test_a_key_that_is_half_the_log_joins_no_task_when_linkage_is_mutual():
    # Every other line is a health check (key 9): it comes near every key of every task.
    truth = [[3, 4, 5, 6], [10, 11, 12]]
    tasks = _interleaved(np.random.default_rng(3), truth, 400)
    stream = [k for key in tasks for k in (key, 9)]
    assert len(co_occurrence_tasks([stream], distance=2, linkage=Linkage.ONE_WAY)) == 1
    found = co_occurrence_tasks([stream], distance=2, linkage=Linkage.MUTUAL)
    assert sorted(sorted(t) for t in found) == sorted([*truth, [9]])


def test_interleaved_tasks_without_ids_are_separated_by_the_key_model_s_predictions():
    truth = [[3, 4, 5, 6], [10, 11, 12], [20, 21, 22, 23, 24]]
    stream = _interleaved(np.random.default_rng(7), truth, 600)
    # A model that knows each task's order: the next step of the key before it is likely,
    # anything else (another task's step coming in between, a task's start) is not.
    after = {a: b for t in truth for a, b in pairwise(t)}
    probabilities = np.array(
        [0.05] + [0.9 if after.get(a) == b else 0.05 for a, b in pairwise(stream)]
    )
    found = predicted_tasks([stream], [probabilities])
    assert sorted(sorted(t) for t in found) == sorted(truth)
    # Where the model predicts nothing, every key is a divergence point: no task forms.
    flat = predicted_tasks([stream], [np.full(len(stream), 0.05)])
    assert all(len(t) == 1 for t in flat)


def test_each_task_gets_its_own_workflow_over_its_own_keys():
    sessions = [[3, 4, 10, 5, 11]] * 4
    workflow = build_workflow(sessions, tasks=[(3, 4, 5), (10, 11)])
    first, second = workflow.tasks
    assert directly_follows([[3, 4, 5]] * 4) == {(e.source, e.target): e.count for e in first.edges}
    assert {(e.source, e.target) for e in second.edges} == {(START, 10), (10, 11), (11, END)}
    assert workflow.task_of(11) is second


def test_a_flagged_step_names_the_state_it_left_what_was_allowed_and_what_came():
    workflow = build_workflow([[3, 4, 6]] * 3 + [[3, 5, 6]])
    left = workflow.divergence(3, 6)  # 6 straight after 3: skipped the 4-or-5 step
    assert (left.last_normal, left.happened, left.known_transition) == (3, 6, False)
    assert [e.target for e in left.allowed] == [4, 5]
    at_start = workflow.divergence(START, 4)
    assert [e.target for e in at_start.allowed] == [3]
    allowed_but_unlikely = workflow.divergence(3, 5)
    assert allowed_but_unlikely.known_transition


def test_a_workflow_travels_as_json_unchanged():
    workflow = build_workflow([[3, 4, 5, 6], [3, 5, 4, 6]], [np.full(5, 0.5), np.full(5, 0.25)])
    assert Workflow.from_json(workflow.to_json()) == workflow
