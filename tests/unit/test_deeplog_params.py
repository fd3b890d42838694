"""DeepLog's parameter-value model: windows per key, training, Gaussian bounds, both exports."""

from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.contract.specs import DEEPLOG_PARAMS, DEEPLOG_PARAMS_TORCHSCRIPT
from export.deeplog_params import (
    KeySeries,
    ParamModelConfig,
    fit_normaliser,
    key_windows,
    train_param_model,
    widened_thresholds,
)
from export.input_guard import InputGuard, widths_of
from export.onnx_export import (
    check_parity,
    check_torchscript_parity,
    compare_outputs,
    export_onnx,
    export_torchscript,
)

CONFIG = ParamModelConfig(window=4, hidden=16, layers=1, key_embedding=4, epochs=30)


def _series(rng: np.random.Generator, n: int = 200) -> list[KeySeries]:
    """Key 3: two dimensions on a cycle (predictable from the past); key 4: noise around 5."""
    t = np.arange(n) * 0.7
    cycle = np.stack([np.sin(t), 100 * np.cos(t)], axis=1) + rng.normal(0, 0.05, (n, 2))
    return [KeySeries(3, cycle), KeySeries(4, rng.normal(5.0, 0.2, (n, 1)))]


@pytest.fixture(scope="module")
def trained():
    return train_param_model(_series(np.random.default_rng(0)), 6, CONFIG, progress=False)


def test_each_vector_is_predicted_from_the_h_before_it_zero_padded_in_front():
    series = np.arange(1, 7, dtype=np.float32).reshape(3, 2)  # 3 vectors of 2 dims
    history, target, mask = key_windows(series, window=2, width=3)
    assert history.shape == (3, 2, 3)
    assert history[0].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert history[2].tolist() == [[1, 2, 0], [3, 4, 0]]
    assert target[2].tolist() == [5, 6, 0]
    assert mask.tolist() == [[1, 1, 0]] * 3


def test_normalisation_is_per_key_and_dimension_and_survives_constant_values():
    series = [KeySeries(3, np.array([[1.0, 7.0], [3.0, 7.0]]))]
    norm = fit_normaliser(series, keys=5, width=2)
    assert norm.mean[3].tolist() == [2.0, 7.0]
    assert norm.std[3].tolist() == [1.0, 1.0]  # a constant dimension gets unit scale
    np.testing.assert_allclose(norm.invert(3, norm.apply(3, series[0].vectors)), series[0].vectors)


def test_training_learns_and_sets_a_bound_for_every_key_and_dimension(trained):
    assert trained.dims == {3: 2, 4: 1}
    assert set(trained.thresholds) == {3, 4}
    assert len(trained.thresholds[3]) == 2 and len(trained.thresholds[4]) == 1
    assert all(0 < b < 10 for bounds in trained.thresholds.values() for b in bounds)
    assert trained.report.final_loss < 0.7  # the mean alone scores 1.0 after normalising


def test_a_higher_confidence_gives_wider_bounds():
    series = _series(np.random.default_rng(0))
    low = train_param_model(series, 6, replace(CONFIG, confidence=0.9), progress=False)
    high = train_param_model(series, 6, replace(CONFIG, confidence=0.999), progress=False)
    for key in (3, 4):
        assert all(h > lo for h, lo in zip(high.thresholds[key], low.thresholds[key], strict=True))


@pytest.mark.parametrize("batch", [1, 9, 257])
def test_pytorch_onnx_runtime_and_torchscript_agree(trained, tmp_path, batch):
    rng = np.random.default_rng(batch)
    width = trained.model.head.out_features
    probe = {
        "HISTORY": rng.normal(0, 1, (batch, CONFIG.window, width)).astype(np.float32),
        "KEY": rng.integers(3, 5, (batch, 1)).astype(np.int64),
    }
    # Exported from two rows whatever the batch: from one the exporter would fix the batch at 1.
    example = {
        name: torch.from_numpy(np.tile(array, (2, 1, 1)[: array.ndim])[:2])
        for name, array in probe.items()
    }
    keys = {"KEY": (0, trained.model.embed.num_embeddings)}
    guarded = InputGuard(
        trained.model, DEEPLOG_PARAMS, keys, widths_of(DEEPLOG_PARAMS, example)
    ).eval()
    onnx_path = export_onnx(guarded, example, tmp_path / "model.onnx")
    ts_guarded = InputGuard(
        trained.model, DEEPLOG_PARAMS_TORCHSCRIPT, keys, widths_of(DEEPLOG_PARAMS, example)
    ).eval()
    ts_path = export_torchscript(ts_guarded, example, tmp_path / "model.pt")
    check_parity(trained.model, DEEPLOG_PARAMS, probe, onnx_path)
    check_torchscript_parity(trained.model, DEEPLOG_PARAMS_TORCHSCRIPT, probe, ts_path)
    # ONNX Runtime against TorchScript directly, the pair two servers would disagree on.
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (from_onnx,) = session.run(["PREDICTED"], probe)
    with torch.no_grad():
        from_ts = torch.jit.load(str(ts_path))(*(torch.from_numpy(probe[n]) for n in probe))
    compare_outputs(DEEPLOG_PARAMS, [from_ts.numpy()], [from_onnx])


def test_feedback_widens_only_the_named_bound_on_its_side_just_past_the_deviation():
    below, above = {3: [1.0, 2.0], 4: [0.5]}, {3: [1.0, 2.0], 4: [0.5]}
    feedback = [(3, 1, 4.0), (4, 0, -2.0), (4, 0, 0.1)]
    new_below, new_above = widened_thresholds(below, above, feedback, margin=0.05)
    assert new_above == {3: [1.0, 4.2], 4: [0.5]}, "above only where a value was above"
    assert new_below == {3: [1.0, 2.0], 4: [2.1]}, "below only where a value was below"
    assert below == above == {3: [1.0, 2.0], 4: [0.5]}, "the serving version's are untouched"
