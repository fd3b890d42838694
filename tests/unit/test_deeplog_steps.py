"""The stepwise key model: one LSTM step per key, the state carried between stretches.

Exported, a session read key by key (state carried) is answered exactly as when read in one
pass, padded rows as when alone, and a bad row is answered with -1 and NaN, never a verdict.
"""

import numpy as np
import onnxruntime as ort
import pytest

from export.contract.metas import StepModelMeta
from export.contract.specs import DEEPLOG_STEPS
from export.contract.vocab import END, START, KeyVocabulary
from export.deeplog_steps import (
    StepModelConfig,
    position_ranks,
    train_step_model,
)
from export.publish import publish_step_model

CONFIG = StepModelConfig(
    top_g=None, folds=2, hidden=16, embedding=8, epochs=20, batch_sessions=8, seed=0
)
VOCAB = KeyVocabulary(names=tuple(f"K{i}" for i in range(5)), templates=tuple("abcde"))
# Normal sessions: the task 3 4 5 repeated one to six times, closed by 6 7.
NORMAL = [[3, 4, 5] * n + [6, 7] for n in range(1, 7)] * 20


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    model, report = train_step_model(NORMAL, VOCAB.size, CONFIG, progress=False)
    repository = tmp_path_factory.mktemp("repo")
    version = publish_step_model(
        model, CONFIG, report.top_g, VOCAB, repository, NORMAL, {"sessions": len(NORMAL)}
    )
    path = repository / DEEPLOG_STEPS.name / str(version) / DEEPLOG_STEPS.default_model_filename
    onnx = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return model, report, StepModelMeta.load(repository, version), onnx


def run(onnx, keys, lengths, state):
    return onnx.run(
        DEEPLOG_STEPS.output_names,
        {
            "KEYS": np.asarray(keys, dtype=np.int64),
            "LENGTHS": np.asarray(lengths, dtype=np.int64).reshape(-1, 1),
            "STATE": np.asarray(state, dtype=np.float32),
        },
    )


def test_g_is_calibrated_on_sessions_no_model_learnt_from(published):
    _, report, meta, _ = published
    assert report.calibration_sessions == len(NORMAL)  # every session, out of fold
    assert report.false_alarm_by_g[report.top_g] <= CONFIG.false_alarm_target
    assert meta.top_g == report.top_g and meta.state_width == CONFIG.state_width()


def test_the_model_learns_the_normal_order(published):
    model, _, meta, _ = published
    assert max(r.max() for r in position_ranks(model, NORMAL)) < meta.top_g
    # 3 4 5 3 5: 4 was next; a session cut after 3 ends where no normal one ends.
    assert position_ranks(model, [[3, 4, 5, 3, 5, 6, 7]])[0][4] >= meta.top_g
    assert position_ranks(model, [[3]])[0][1] >= meta.top_g


def test_a_session_read_key_by_key_is_answered_as_in_one_pass(published):
    _, _, meta, onnx = published
    session = [START, 3, 4, 5, 3, 4, 5, 6, 7, END]
    zero = np.zeros((1, meta.state_width))
    whole_rank, whole_keys, _, _ = run(onnx, [session], [len(session)], zero)
    state, ranks, tops = zero, [], []
    for i in range(len(session) - 1):
        rank, top, _, state = run(onnx, [session[i : i + 2]], [2], state)
        ranks.append(rank[0, 0])
        tops.append(top[0, 0])
    assert ranks == whole_rank[0].tolist()
    assert np.array_equal(np.stack(tops), whole_keys[0])


def test_a_stretch_goes_on_from_the_state_the_last_one_ended_in(published):
    _, _, meta, onnx = published
    session = [START, 3, 4, 5, 3, 4, 5, END]
    zero = np.zeros((1, meta.state_width))
    whole, *_ = run(onnx, [session], [len(session)], zero)
    first, _, _, state = run(onnx, [session[:4]], [4], zero)
    second, *_ = run(onnx, [session[3:]], [len(session) - 3], state)
    assert first[0].tolist() + second[0].tolist() == whole[0].tolist()


def test_a_padded_row_is_answered_as_when_alone(published):
    _, _, meta, onnx = published
    short, long = [START, 3, 4], [START, 3, 4, 5, 3, 4, 5, 6]
    zero = np.zeros((2, meta.state_width))
    padded = [short + [END] * (len(long) - len(short)), long]
    rank, _, _, state = run(onnx, padded, [len(short), len(long)], zero)
    alone_rank, _, _, alone_state = run(onnx, [short], [len(short)], zero[:1])
    assert rank[0, : len(short) - 1].tolist() == alone_rank[0].tolist()
    np.testing.assert_allclose(state[0], alone_state[0], atol=1e-6)


@pytest.mark.parametrize(
    "keys, length, state_value",
    [
        ([START, 3, VOCAB.size], 3, 0.0),  # a key id past the vocabulary
        ([START, -1, 4], 3, 0.0),  # a negative key id
        ([START, 3, 4], 4, 0.0),  # a length past the row
        ([START, 3, 4], 1, 0.0),  # no key to check
        ([START, 3, 4], 3, np.nan),  # a NaN in the state
    ],
)
def test_a_bad_row_is_answered_with_minus_one_and_nan(published, keys, length, state_value):
    _, _, meta, onnx = published
    good = [START, 3, 4]
    state = np.zeros((2, meta.state_width))
    state[0, 0] = state_value
    rank, top, probs, state_out = run(onnx, [keys, good], [length, 3], state)
    assert (rank[0] == -1).all() and (top[0] == -1).all()
    assert np.isnan(probs[0]).all() and np.isnan(state_out[0]).all()
    assert (rank[1] >= 0).all() and np.isfinite(state_out[1]).all()
