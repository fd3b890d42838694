"""Exported graphs flag input they cannot judge themselves, on any server that runs them:
ids out of range and non-finite floats in their row, a width other than the version's own in
every row (the graph takes any width, so nothing fails inside an ensemble's step)."""

import numpy as np
import onnxruntime as ort
import torch

from export.contract.specs import DEEPLOG_KEYS, DEEPLOG_PARAMS, DEEPLOG_PARAMS_TORCHSCRIPT
from export.deeplog_keys import KeyLSTM, KeyModelConfig, KeyModelServing
from export.deeplog_params import ParamLSTM, ParamModelConfig
from export.input_guard import InputGuard, widths_of
from export.onnx_export import export_onnx, export_torchscript

VOCAB = 9


def _keys_graph(tmp_path):
    torch.manual_seed(0)
    config = KeyModelConfig(hidden=8, embedding=4, window=4, top_g=3)
    example = {"WINDOWS": torch.zeros((2, 4), dtype=torch.int64)}
    example["NEXT_KEY"] = torch.zeros((2, 1), dtype=torch.int64)
    guard = InputGuard(
        KeyModelServing(KeyLSTM(VOCAB, config), config.top_g),
        DEEPLOG_KEYS,
        {"WINDOWS": (0, VOCAB), "NEXT_KEY": (0, VOCAB)},
        widths_of(DEEPLOG_KEYS, example),
    ).eval()
    return guard, export_onnx(guard, example, tmp_path / "model.onnx")


def test_a_key_id_outside_the_vocabulary_gets_a_poisoned_answer_and_its_neighbours_do_not(
    tmp_path,
):
    _, path = _keys_graph(tmp_path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    windows = np.random.default_rng(0).integers(0, VOCAB, (4, 4))
    next_keys = np.array([[1], [-1], [VOCAB], [2]])
    windows_bad = windows.copy()
    windows_bad[3, 0] = -3
    rank, top_keys, top_probs = session.run(None, {"WINDOWS": windows, "NEXT_KEY": next_keys})
    assert rank[1, 0] == rank[2, 0] == -1  # no rank is negative: -1 says "not judged"
    assert (top_keys[1:3] == -1).all() and np.isnan(top_probs[1:3]).all()
    assert rank[0, 0] >= 0 and np.isfinite(top_probs[[0, 3]]).all()
    rank, _, _ = session.run(None, {"WINDOWS": windows_bad, "NEXT_KEY": next_keys * 0})
    assert list(rank[:, 0] == -1) == [False, False, False, True]


def test_non_finite_history_is_flagged_not_predicted(tmp_path):
    torch.manual_seed(0)
    config = ParamModelConfig(hidden=8, layers=1, key_embedding=2, window=3)
    model = ParamLSTM(5, 2, config)
    example = {"HISTORY": torch.zeros((2, 3, 2)), "KEY": torch.zeros((2, 1), dtype=torch.int64)}
    history = np.zeros((3, 3, 2), np.float32)
    history[1, 2, 0], history[2, 0, 1] = np.nan, np.inf
    keys = np.array([[1], [1], [1]])
    widths = widths_of(DEEPLOG_PARAMS, example)
    onnx_path = export_onnx(
        InputGuard(model, DEEPLOG_PARAMS, {"KEY": (0, 5)}, widths).eval(),
        example,
        tmp_path / "m.onnx",
    )
    (predicted,) = ort.InferenceSession(str(onnx_path)).run(None, {"HISTORY": history, "KEY": keys})
    assert np.isfinite(predicted[0]).all() and np.isnan(predicted[1:]).all()
    ts_guard = InputGuard(model, DEEPLOG_PARAMS_TORCHSCRIPT, {"KEY": (0, 5)}, widths).eval()
    ts_path = export_torchscript(ts_guard, example, tmp_path / "m.pt")
    with torch.no_grad():
        traced = torch.jit.load(str(ts_path))(torch.from_numpy(history), torch.from_numpy(keys))
    assert np.isnan(traced.numpy()[1:]).all()


def test_a_window_of_another_width_is_flagged_in_every_row_and_the_right_width_still_answers(
    tmp_path,
):
    _, path = _keys_graph(tmp_path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    next_keys = np.ones((3, 1), np.int64)
    for width in (1, 3, 5, 40):
        rank, top_keys, top_probs = session.run(
            None, {"WINDOWS": np.ones((3, width), np.int64), "NEXT_KEY": next_keys}
        )
        assert (rank == -1).all() and (top_keys == -1).all() and np.isnan(top_probs).all()
    rank, _, top_probs = session.run(
        None, {"WINDOWS": np.ones((3, 4), np.int64), "NEXT_KEY": next_keys}
    )
    assert (rank >= 0).all() and np.isfinite(top_probs).all()


def test_a_traced_model_keeps_its_widths_dynamic_and_flags_another(tmp_path):
    torch.manual_seed(0)
    config = ParamModelConfig(hidden=8, layers=1, key_embedding=2, window=3)
    model = ParamLSTM(5, 2, config)
    example = {"HISTORY": torch.zeros((2, 3, 2)), "KEY": torch.zeros((2, 1), dtype=torch.int64)}
    guard = InputGuard(
        model, DEEPLOG_PARAMS_TORCHSCRIPT, {"KEY": (0, 5)}, widths_of(DEEPLOG_PARAMS, example)
    ).eval()
    traced = torch.jit.load(str(export_torchscript(guard, example, tmp_path / "m.pt")))
    with torch.no_grad():
        for shape, flagged in [((4, 3, 2), False), ((4, 2, 2), True), ((4, 3, 7), True)]:
            predicted = traced(torch.ones(shape), torch.ones((shape[0], 1), dtype=torch.int64))
            assert predicted.shape == (shape[0], 2)
            assert bool(torch.isnan(predicted).all()) is flagged
