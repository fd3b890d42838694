"""ASGNet served by the real Triton: the tokenizer model, the ``asgnet`` ensemble and the
``log_anomaly`` ensemble, on real HDFS sessions, against the PyTorch models they came from."""

import numpy as np
import pytest

from client.alerts import Check
from client.detection import PartResult
from client.log_anomaly import TEXT_BYTES, SessionDetector, open_log_anomaly
from client.triton_client import UnjudgedInput
from export.asgnet import predict
from export.contract.specs import ASGNET, ASGNET_TOKENIZER, DEEPLOG_KEYS
from export.contract.windows import session_windows
from export.hdfs_data import read_key_sessions
from export.log_tokenizer import encode

UNITS = 32


def _asgnet(triton, texts: list[str], counts: np.ndarray):
    return triton.infer(
        ASGNET.name,
        {"TEXT": np.array([[t.encode()] for t in texts], dtype=object), "COUNTS": counts},
        ASGNET.output_names,
    ).outputs


def test_text_is_tokenized_in_the_server_as_in_training(triton, tiny_asgnet, asgnet_release):
    trained, (_, _, test) = tiny_asgnet
    texts = test.texts(trained.vocabulary)[:4]
    answer = triton.infer(
        ASGNET_TOKENIZER.name,
        {"TEXT": np.array([[t.encode()] for t in texts], dtype=object)},
        ASGNET_TOKENIZER.output_names,
        version=asgnet_release,
    )
    ids, mask = encode(trained.tokenizer, texts)
    np.testing.assert_array_equal(answer.outputs["INPUT_IDS"], ids)
    np.testing.assert_array_equal(answer.outputs["ATTENTION_MASK"], mask)


def test_the_asgnet_ensemble_answers_what_pytorch_computes(triton, tiny_asgnet, asgnet_release):
    trained, (_, _, test) = tiny_asgnet
    expected = predict(trained, test)
    texts = test.texts(trained.vocabulary)[:UNITS]
    out = _asgnet(triton, texts, test.counts(trained.vocabulary)[:UNITS])
    np.testing.assert_allclose(out["PROBS"], expected.gated[:UNITS], atol=1e-4)
    np.testing.assert_allclose(out["CONFIDENCE"][:, 0], expected.gated[:UNITS].max(1), atol=1e-4)
    np.testing.assert_allclose(out["FEATURES"], expected.features[:UNITS], atol=1e-4)


@pytest.mark.parametrize("text", [b"", b"\xc3\x28", b"y" * 1_500_000])
def test_text_it_cannot_encode_is_flagged_through_the_ensemble_and_refused_by_the_client(
    triton, tiny_asgnet, asgnet_release, text
):
    trained, (_, _, test) = tiny_asgnet
    texts = [text, test.texts(trained.vocabulary)[0].encode()]
    counts = np.zeros((2, trained.vocabulary.size), np.float32)
    with pytest.raises(UnjudgedInput, match=r"PROBS is NaN in 1 row\(s\) \(0\)"):
        triton.infer(
            ASGNET.name,
            {"TEXT": np.array([[t] for t in texts], dtype=object), "COUNTS": counts},
            ASGNET.output_names,
        )


@pytest.fixture(scope="module")
def abnormal_sessions(hdfs_dir, hdfs_model) -> list[list[int]]:
    vocab = hdfs_model.meta.vocabulary
    sessions = []
    for events in read_key_sessions(hdfs_dir / "hdfs_test_abnormal"):
        sessions.append([vocab.key_of_name(e) for e in events])
        if len(sessions) == 6:
            return sessions
    return sessions


def test_log_anomaly_gives_deeplog_and_asgnet_answers_in_one_request(
    triton, repository, hdfs_model, asgnet_release, abnormal_sessions
):
    model = open_log_anomaly(triton, hdfs_model)
    assert model.meta.version == asgnet_release
    meta = hdfs_model.meta
    for keys in abnormal_sessions:
        result = model.check(keys)
        windows, next_keys = session_windows(keys, meta.window, meta.end_marker)
        direct = hdfs_model.score(windows, next_keys)  # deeplog_keys on its own
        np.testing.assert_array_equal(result.scores.rank, direct.rank)
        np.testing.assert_array_equal(result.scores.anomalous, direct.anomalous)
        request = model.request(keys)
        alone = _asgnet(triton, [request["TEXT"][0, 0].decode()], request["COUNTS"])
        expected = dict(zip(model.meta.classes, alone["PROBS"][0].round(4).tolist(), strict=True))
        assert result.diagnosis.probabilities == pytest.approx(expected, abs=1e-4)
        assert len(result.diagnosis.similar) == 3
        assert result.diagnosis.similar[0].distance <= result.diagnosis.similar[-1].distance


def test_a_session_longer_than_one_batch_is_checked_whole(
    triton, repository, hdfs_model, asgnet_release, abnormal_sessions
):
    model = open_log_anomaly(triton, hdfs_model, load=False)
    keys = (abnormal_sessions[0] * 2000)[: DEEPLOG_KEYS.max_batch_size + 500]
    result = model.check(keys)
    windows, next_keys = session_windows(keys, hdfs_model.meta.window, hdfs_model.meta.end_marker)
    direct = hdfs_model.score(windows, next_keys)
    np.testing.assert_array_equal(result.scores.rank, direct.rank)
    np.testing.assert_array_equal(result.scores.top_keys, direct.top_keys)
    assert len(model.request(keys)["TEXT"][0, 0]) <= TEXT_BYTES
    assert result.diagnosis.label in model.meta.classes


def test_sessions_diagnosed_abnormal_raise_alerts_with_similar_past_units(
    triton, repository, hdfs_model, asgnet_release, abnormal_sessions
):
    detector = SessionDetector(open_log_anomaly(triton, hdfs_model, load=False))
    for n, keys in enumerate(abnormal_sessions):
        for position, key in enumerate(keys):
            detector.push(f"blk_{n}", key, line=1000 * n + position)
        detector.close(f"blk_{n}")
    found = detector.flush()
    alerts = [a for a in found if not isinstance(a, PartResult)]
    results = {r.session: r for r in found if isinstance(r, PartResult)}
    assert len(results) == len(abnormal_sessions)  # one result per session, after its alerts
    diagnosed = {s for s, r in results.items() if r.diagnosis != "normal"}
    diagnoses = [a for a in alerts if a.check is Check.DIAGNOSIS]
    assert {a.session for a in diagnoses} == diagnosed
    assert diagnosed, "the small model should call some of these abnormal sessions abnormal"
    for alert in diagnoses:
        assert alert.similar and all(s.label in ("normal", "anomaly") for s in alert.similar)
        assert alert.lines[0] == 1000 * int(alert.session.split("_")[1])
    key_alerts = [a for a in alerts if a.check is Check.LOG_KEY]
    assert {a.session for a in key_alerts} == {s for s, r in results.items() if r.abnormal}


def test_a_session_checked_in_parts_is_placed_in_its_workflow_as_when_whole(
    triton, hdfs_model, asgnet_release, abnormal_sessions
):
    def key_alerts(part_keys: int | None) -> set:
        detector = SessionDetector(open_log_anomaly(triton, hdfs_model, load=False))
        for n, keys in enumerate(abnormal_sessions[:40]):
            for position, key in enumerate(keys):
                detector.push(f"blk_{n}", key, line=position)
                if part_keys and (position + 1) % part_keys == 0 and position + 1 < len(keys):
                    detector.close(f"blk_{n}", final=False)
            detector.close(f"blk_{n}")
        return {
            (a.session, a.position, a.workflow.last_normal.key, a.workflow.happened.key)
            for a in detector.flush()
            if not isinstance(a, PartResult) and a.check is Check.LOG_KEY
        }

    whole = key_alerts(None)
    assert whole and key_alerts(4) == whole
