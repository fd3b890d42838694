"""DeepLog served by Triton judges real HDFS sessions from ../shared/data."""

import itertools

import numpy as np
import onnxruntime as ort
import pytest

from client.detection import KeyModel, open_key_model
from export.contract.errors import VersionMismatch
from export.contract.specs import DEEPLOG_KEYS
from export.contract.vocab import UNKNOWN
from export.contract.windows import session_windows
from export.hdfs_data import read_key_sessions, read_labelled_sessions


def _keys(model: KeyModel, session: list[str]) -> list[int]:
    return [model.meta.vocabulary.key_of_name(k) for k in session]


@pytest.fixture(scope="module")
def abnormal(hdfs_dir, hdfs_model) -> list[list[int]]:
    sessions = itertools.islice(read_key_sessions(hdfs_dir / "hdfs_test_abnormal"), 2000)
    return [_keys(hdfs_model, s) for s in sessions]


@pytest.fixture(scope="module")
def normal(hdfs_dir, hdfs_model) -> list[list[int]]:
    rows = read_labelled_sessions(hdfs_dir / "robust_log_train.csv")
    return [_keys(hdfs_model, s) for s, label in rows if label == 0][:2000]


def test_known_abnormal_sessions_are_flagged(hdfs_model, abnormal):
    flags = hdfs_model.sessions_anomalous(abnormal)
    assert flags.mean() >= 0.9


def test_known_normal_sessions_pass(hdfs_model, normal):
    flags = hdfs_model.sessions_anomalous(normal)
    assert flags.mean() <= 0.05


def test_a_session_with_a_key_never_seen_in_training_is_abnormal(hdfs_model, abnormal):
    with_unknown = [s for s in abnormal if UNKNOWN in s][:50]
    assert with_unknown, "the abnormal set has sessions with unseen keys (data README)"
    assert hdfs_model.sessions_anomalous(with_unknown).all()


def test_short_sessions_are_judged_on_their_keys_not_flagged_for_being_short(hdfs_model, abnormal):
    """A block that stops after two or three keys: its keys pass, its early end does not."""
    h = hdfs_model.meta.window
    short = [s for s in abnormal if len(s) < h + 1 and UNKNOWN not in s][:200]
    assert short, "hdfs_test_abnormal has sessions shorter than h+1 keys (data README)"
    windows, next_keys = zip(*(session_windows(s, h) for s in short), strict=True)
    scores = hdfs_model.score(np.concatenate(windows), np.concatenate(next_keys))
    is_end = np.concatenate([np.arange(len(k)) == len(k) - 1 for k in next_keys])
    assert scores.anomalous[~is_end].mean() <= 0.05  # the keys themselves are normal ones
    assert scores.anomalous[is_end].mean() >= 0.9  # ending there is what is abnormal


def test_triton_answers_exactly_what_the_exported_model_computes(hdfs_model, repository, normal):
    windows, next_keys = session_windows(normal[0], hdfs_model.meta.window)
    for session in normal[1:200]:
        w, k = session_windows(session, hdfs_model.meta.window)
        windows, next_keys = np.concatenate([windows, w]), np.concatenate([next_keys, k])
    served = hdfs_model.score(windows, next_keys)
    path = repository / DEEPLOG_KEYS.name / str(hdfs_model.meta.version) / "model.onnx"
    local = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rank, top_keys, top_probs = local.run(
        None, {"WINDOWS": windows, "NEXT_KEY": next_keys[:, None]}
    )
    np.testing.assert_array_equal(served.rank, rank[:, 0])
    np.testing.assert_array_equal(served.top_keys, top_keys)
    np.testing.assert_allclose(served.top_probs, top_probs, rtol=1e-6)


def test_a_version_that_is_not_served_is_refused(hdfs_model, triton, repository):
    with pytest.raises(VersionMismatch, match="not ready"):
        open_key_model(triton, version=hdfs_model.meta.version + 100, load=False)
