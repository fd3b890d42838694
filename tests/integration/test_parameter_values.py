"""DeepLog's parameter-value check served by Triton, from ONNX and from TorchScript."""

from dataclasses import replace

import numpy as np
import pytest

from client.alerts import Check, alert_id
from client.feedback import CONFIRMED, FALSE_POSITIVE, FeedbackStore
from client.ops.retrain import recalibrate_params
from client.ops.workload import WorkloadConfig, generate_workload
from client.param_detection import ParamModel, open_param_model
from client.pipeline import detect_stream
from export.contract.errors import VersionMismatch
from export.contract.vocab import KeyVocabulary

SLOW = WorkloadConfig(blocks=300, anomaly_rate=0.1, seed=21, slowdown=10.0)


def test_onnx_and_torchscript_versions_answer_alike(param_models):
    onnx, torchscript = param_models["onnx"], param_models["torchscript"]
    rng = np.random.default_rng(0)
    keys = np.array(sorted(onnx.meta.thresholds), dtype=np.int64)
    history = rng.normal(0, 1, (300, onnx.meta.window, onnx.meta.width)).astype(np.float32)
    picked = rng.choice(keys, 300)
    np.testing.assert_allclose(
        onnx.predict(history, picked)[0], torchscript.predict(history, picked)[0], atol=1e-4
    )


@pytest.mark.parametrize("export_format", ["onnx", "torchscript"])
def test_slow_transfers_are_caught_by_the_parameter_check_alone(
    param_models, workload_model, export_format
):
    workload = generate_workload(SLOW)
    alerts, key_flagged = [], set()
    summary = detect_stream(
        workload.lines,
        workload_model,
        alerts.append,
        params=param_models[export_format],
        on_verdict=lambda v: v.abnormal and key_flagged.add(v.session),
    )
    values = [a for a in alerts if a.check is Check.PARAMETER_VALUE]
    slow = {b for b, kind in workload.truth.items() if kind == "slow_transfer"}
    assert slow, "the workload has slow transfers"
    assert slow <= {a.session for a in values}
    assert not slow & key_flagged  # their keys look normal
    normal = {b for b, kind in workload.truth.items() if kind is None}
    false_alarms = [a for a in values if a.session in normal]
    assert len(false_alarms) / summary.params_checked < 0.01  # per checked entry
    slow_alert = next(a for a in values if a.session in slow)
    assert slow_alert.dimension == "gap_s"
    assert slow_alert.value > slow_alert.accepted_high > slow_alert.predicted


def test_a_parameter_model_of_another_vocabulary_is_refused(param_models, workload_model):
    onnx = param_models["onnx"]
    other = KeyVocabulary(names=("X",), templates=("something else <*>",))
    stranger = ParamModel(onnx.triton, replace(onnx.meta, vocabulary=other))
    with pytest.raises(VersionMismatch, match="key ids do not mean the same templates"):
        detect_stream([], workload_model, lambda alert: None, params=stranger)


def test_false_positive_values_fed_back_widen_the_bounds_of_a_new_served_version(
    param_models, workload_model, repository, triton, tmp_path
):
    """Run last in this file: it publishes deeplog_params' next version (the one the other
    tests are bound to stays loaded beside it)."""
    onnx = param_models["onnx"]
    running = open_param_model(triton, onnx.meta.model)  # follows the server
    workload = generate_workload(replace(SLOW, seed=5, blocks=600))
    alerts: list = []
    detect_stream(workload.lines, workload_model, alerts.append, params=onnx)
    values = [a for a in alerts if a.check is Check.PARAMETER_VALUE]
    normal = [a for a in values if workload.truth[a.session] is None]
    slow = [a for a in values if workload.truth[a.session] == "slow_transfer"]
    assert normal and slow, "some normal entries are flagged, and the slow transfers are"
    with FeedbackStore(tmp_path / "feedback.sqlite") as store:
        # As detect records them: a value's feedback is learnt from the alert alone.
        store.record(values, {a.session: [] for a in values}, onnx.meta.vocabulary.fingerprint)
        for alert in normal:
            store.give(alert_id(alert), FALSE_POSITIVE)
        store.give(alert_id(slow[0]), CONFIRMED)
        result = recalibrate_params(store, triton, repository, onnx.meta.model)
        assert result.refused == [] and result.new_version == onnx.meta.version + 1
        assert [f.verdict for f in store.pending()] == [CONFIRMED], "the verdicts were used"

    assert result.after.feedback_flagged == 0 < result.before.feedback_flagged
    assert result.after.detected == result.before.detected == 1, "the confirmed one still fails"
    assert result.new_version in triton.ready_versions(onnx.meta.model)

    again: list = []  # the client opened before the recalibration, now answered by the new one
    detect_stream(workload.lines, workload_model, again.append, params=running)
    values = [a for a in again if a.check is Check.PARAMETER_VALUE]
    assert {a.model_version for a in values} == {result.new_version}
    flagged = {(a.session, a.line) for a in values}
    assert not flagged & {(a.session, a.line) for a in normal}, "the fed-back values pass"
    assert {a.session for a in slow} <= {s for s, _ in flagged}, "slow transfers still flagged"
    assert (repository / onnx.meta.model / str(onnx.meta.version) / "model.onnx").read_bytes() == (
        repository / onnx.meta.model / str(result.new_version) / "model.onnx"
    ).read_bytes(), "same weights, new bounds"
