"""DeepLog's parameter-value check served by Triton, from ONNX and from TorchScript."""

from dataclasses import replace

import numpy as np
import pytest

from client.param_detection import ParamModel
from client.pipeline import detect_stream
from client.workload import WorkloadConfig, generate_workload
from export.repository import VersionMismatch
from export.vocab import KeyVocabulary

SLOW = WorkloadConfig(blocks=300, anomaly_rate=0.1, seed=21, slowdown=10.0)


def test_onnx_and_torchscript_versions_answer_alike(param_models):
    onnx, torchscript = param_models["onnx"], param_models["torchscript"]
    rng = np.random.default_rng(0)
    keys = np.array(sorted(onnx.meta.thresholds), dtype=np.int64)
    history = rng.normal(0, 1, (300, onnx.meta.window, onnx.meta.width)).astype(np.float32)
    picked = rng.choice(keys, 300)
    np.testing.assert_allclose(
        onnx.predict(history, picked), torchscript.predict(history, picked), atol=1e-4
    )


@pytest.mark.parametrize("export_format", ["onnx", "torchscript"])
def test_slow_transfers_are_caught_by_the_parameter_check_alone(
    param_models, workload_model, export_format
):
    workload = generate_workload(SLOW)
    alerts = []
    summary = detect_stream(
        workload.lines, workload_model, alerts.append, params=param_models[export_format]
    )
    slow = {b for b, kind in workload.truth.items() if kind == "slow_transfer"}
    assert slow, "the workload has slow transfers"
    assert slow <= set(summary.param_sessions)
    assert not slow & {s for s, bad in summary.verdicts.items() if bad}  # keys look normal
    normal = {b for b, kind in workload.truth.items() if kind is None}
    false_alarms = [a for a in alerts if a.check == "parameter_value" and a.session in normal]
    assert len(false_alarms) / summary.params_checked < 0.01  # per checked entry
    slow_alert = next(a for a in alerts if a.check == "parameter_value" and a.session in slow)
    assert slow_alert.dimension == "gap_s"
    assert slow_alert.value > slow_alert.accepted_high > slow_alert.predicted


def test_a_parameter_model_of_another_vocabulary_is_refused(param_models, workload_model):
    onnx = param_models["onnx"]
    other = KeyVocabulary(names=("X",), templates=("something else <*>",))
    stranger = ParamModel(onnx.triton, replace(onnx.meta, vocabulary=other))
    with pytest.raises(VersionMismatch, match="key ids do not mean the same templates"):
        detect_stream([], workload_model, lambda alert: None, params=stranger)
