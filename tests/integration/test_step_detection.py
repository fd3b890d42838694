"""The stepwise key model through a real Triton: a live stream, each session's state carried
by the client from stretch to stretch, is judged exactly as its closed sessions are in one
pass, and both as the trained model judges them in process."""

from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.random import default_rng as rng

from benchmarks import key_models
from client.ops.training import session_keys, train_and_publish_steps
from client.ops.workload import WorkloadConfig, generate_workload
from client.pipeline import detect_stream
from client.step_detection import StepModel, StepStreamingDetector, open_step_model
from client.triton_client import TritonClient
from export.contract.specs import DEEPLOG_STEPS
from export.contract.vocab import END
from export.deeplog_steps import StepLSTM, StepModelConfig, position_ranks
from export.publish import WEIGHTS_FILE


@pytest.fixture(scope="module")
def step_model(repository, triton, demo_corpus):
    # g fixed (no calibration folds) and few epochs: the tests compare paths, not accuracy.
    config = StepModelConfig(top_g=4, epochs=3, hidden=32)
    version = train_and_publish_steps(
        demo_corpus.sessions, demo_corpus.vocabulary, repository, config, source="workload"
    )
    model = StepLSTM(demo_corpus.vocabulary.size, config)
    weights = repository / DEEPLOG_STEPS.name / str(version) / WEIGHTS_FILE
    model.load_state_dict(torch.load(weights, weights_only=True))
    return open_step_model(triton, version), model.eval()


@pytest.fixture(scope="module")
def sessions(demo_corpus) -> dict[str, list[int]]:
    """Blocks of a log with anomalies, in the order their lines were written."""
    lines = generate_workload(WorkloadConfig(blocks=150, anomaly_rate=0.2, seed=7)).lines
    return session_keys(lines, demo_corpus.vocabulary)


def interleaved(sessions: dict[str, list[int]], seed: int = 0) -> list[tuple[str, int]]:
    """The sessions' keys interleaved at random, each session's own in order."""
    rng = np.random.default_rng(seed)
    owners = np.concatenate([[s] * len(keys) for s, keys in sessions.items()])
    rng.shuffle(owners)
    cursor = {s: 0 for s in sessions}
    order = []
    for s in owners:
        order.append((s, sessions[s][cursor[s]]))
        cursor[s] += 1
    return order


def stream(detector, sessions, parts_of: int | None = None):
    """Feed every key, close each session after its last; with ``parts_of`` a session is
    closed as a part every that many keys. Returns alerts and part results."""
    left = {s: len(k) for s, k in sessions.items()}
    found, since = [], {s: 0 for s in sessions}
    for line, (session, key) in enumerate(interleaved(sessions)):
        found += detector.push(session, key, line)
        left[session] -= 1
        since[session] += 1
        if left[session] == 0:
            found += detector.close(session)
        elif parts_of and since[session] == parts_of:
            found += detector.close(session, final=False)
            since[session] = 0
    return found + detector.flush()


def alerts_of(found) -> set[tuple[str, int, int]]:
    return {(a.session, a.position, a.rank) for a in found if hasattr(a, "rank")}


def test_closed_sessions_are_judged_as_the_trained_model_judges_them(step_model, sessions):
    served, model = step_model
    keyed = list(sessions.values())
    in_process = [bool((r >= served.meta.top_g).any()) for r in position_ranks(model, keyed)]
    verdicts = served.sessions_anomalous(keyed)
    assert verdicts.tolist() == in_process
    assert 0 < verdicts.sum() < len(keyed)  # the test says something either way


@pytest.mark.parametrize("batch_keys, parts_of", [(1, None), (37, None), (500, 5)])
def test_a_live_stream_is_judged_as_its_closed_sessions(step_model, sessions, batch_keys, parts_of):
    served, model = step_model
    expected = set()
    for session, ranks in zip(
        sessions, position_ranks(model, list(sessions.values())), strict=True
    ):
        keys = sessions[session] + [END]
        expected |= {(session, p, int(r)) for p, r in enumerate(ranks) if r >= served.meta.top_g}
        assert len(keys) == len(ranks)
    detector = StepStreamingDetector(served, batch_keys=batch_keys)
    found = stream(detector, sessions, parts_of)
    assert alerts_of(found) == expected
    results = [r for r in found if hasattr(r, "checked")]
    assert {r.session for r in results if r.abnormal} == {s for s, _, _ in expected}
    whole = {s: [] for s in sessions}
    for r in sorted(results, key=lambda r: (r.session, r.part)):
        whole[r.session] += r.keys
    assert whole == sessions
    assert detector.windows_checked == sum(len(k) + 1 for k in sessions.values())


def test_a_session_resumed_from_a_checkpoint_goes_on_from_its_carried_state(step_model, sessions):
    served, _ = step_model
    session, keys = max(sessions.items(), key=lambda item: len(item[1]))
    whole = StepStreamingDetector(served)
    for key in keys:
        whole.push(session, key)
    expected = alerts_of(whole.close(session) + whole.flush())

    first = StepStreamingDetector(served)
    cut = len(keys) // 2
    for key in keys[:cut]:
        first.push(session, key)
    found = first.close(session, final=False)  # a part ends; a checkpoint is taken after it
    second = StepStreamingDetector(served)
    second.resume(session, first.carry(session))
    for key in keys[cut:]:
        found += second.push(session, key)
    found += second.close(session) + second.flush()
    assert alerts_of(found) == expected


def test_through_shared_memory_the_answers_are_the_same(server, step_model, sessions):
    served, _ = step_model
    keyed = list(sessions.values())
    with TritonClient(server.grpc_url, shared_memory=True) as local:
        beside = StepModel(local, served.meta)
        assert np.array_equal(beside.worst_ranks(keyed), served.worst_ranks(keyed))
        found = stream(StepStreamingDetector(beside, batch_keys=37), sessions)
        assert alerts_of(found) == alerts_of(stream(StepStreamingDetector(served), sessions))
        regions = [local.shared.inputs.name, local.shared.outputs.name]
        assert all(Path("/dev/shm", name).exists() for name in regions)
    assert not any(Path("/dev/shm", name).exists() for name in regions)  # freed on close


def test_every_way_the_benchmark_measures_judges_as_in_process(
    server, repository, workload_model, step_model, sessions
):
    served, _ = step_model
    with TritonClient(server.grpc_url, shared_memory=True) as local:
        rates = key_models.compare(
            workload_model, served, local, repository, list(sessions.values()), rng(0)
        )
    assert [r.way for r in rates] == list("abcdefgh")
    assert all(r.same_verdicts == 1.0 and r.keys_per_s > 0 for r in rates)


def test_a_log_checked_end_to_end_with_steps_gets_the_closed_sessions_verdicts(
    workload_model, step_model, demo_corpus
):
    served, _ = step_model
    lines = generate_workload(WorkloadConfig(blocks=150, anomaly_rate=0.2, seed=7)).lines
    verdicts = []
    summary = detect_stream(
        lines, workload_model, lambda alert: None, on_verdict=verdicts.append, steps=served
    )
    keyed = session_keys(lines, demo_corpus.vocabulary)
    expected = dict(zip(keyed, served.sessions_anomalous(list(keyed.values())), strict=True))
    assert {v.session: v.abnormal for v in verdicts} == expected
    assert summary.windows_checked == sum(len(k) + 1 for k in keyed.values())
