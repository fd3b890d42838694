"""Export: the ONNX model computes what the PyTorch model computes, for any batch size."""

from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.contract.metas import KeyModelMeta
from export.contract.specs import DEEPLOG_KEYS
from export.contract.vocab import KeyVocabulary
from export.deeplog_keys import KeyLSTM, KeyModelConfig, KeyModelServing, train_key_model
from export.onnx_export import ParityError, compare_outputs
from export.publish import RetrainData, publish_key_model

CONFIG = KeyModelConfig(window=4, top_g=3, hidden=16, layers=2, embedding=8, epochs=2)
VOCAB = KeyVocabulary(names=tuple(f"K{i}" for i in range(6)), templates=tuple("abcdef"))


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    rng = np.random.default_rng(0)
    sessions = [list(rng.integers(3, VOCAB.size, rng.integers(1, 12))) for _ in range(60)]
    model, report = train_key_model(sessions, VOCAB.size, CONFIG, progress=False)
    repository = tmp_path_factory.mktemp("repo")
    retrain = RetrainData.from_training(sessions, [], CONFIG)
    version = publish_key_model(
        model, CONFIG, report.top_g, VOCAB, repository, retrain, {"windows": report.windows}
    )
    return model, repository, version


@pytest.mark.parametrize("batch", [1, 7, 300])
def test_onnx_runtime_agrees_with_pytorch_at_any_batch_size(published, batch):
    model, repository, version = published
    rng = np.random.default_rng(batch)
    windows = rng.integers(0, VOCAB.size, (batch, CONFIG.window)).astype(np.int64)
    next_key = rng.integers(0, VOCAB.size, (batch, 1)).astype(np.int64)
    serving = KeyModelServing(model, CONFIG.top_g).eval()
    with torch.no_grad():
        answer = serving(torch.from_numpy(windows), torch.from_numpy(next_key))
        expected = [t.numpy() for t in answer]
    path = repository / DEEPLOG_KEYS.name / str(version) / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(DEEPLOG_KEYS.output_names, {"WINDOWS": windows, "NEXT_KEY": next_key})
    parity = compare_outputs(DEEPLOG_KEYS, expected, actual)
    assert [p.name for p in parity] == ["RANK", "TOP_KEYS", "TOP_PROBS"]
    assert actual[0].shape == (batch, 1) and actual[1].shape == (batch, CONFIG.top_g)


def test_the_version_carries_the_settings_and_vocabulary_it_was_trained_with(published):
    _, repository, version = published
    meta = KeyModelMeta.load(repository, version)
    assert (meta.window, meta.top_g, meta.end_marker) == (4, 3, True)
    assert meta.vocabulary == VOCAB


def test_rank_counts_the_keys_the_model_found_likelier():
    torch.manual_seed(0)
    serving = KeyModelServing(KeyLSTM(VOCAB.size, CONFIG), CONFIG.top_g).eval()
    windows = torch.zeros((1, CONFIG.window), dtype=torch.int64)
    with torch.no_grad():
        _, top_keys, top_probs = serving(windows, torch.zeros((1, 1), dtype=torch.int64))
        for position, key in enumerate(top_keys[0].tolist()):
            rank, _, _ = serving(windows, torch.tensor([[key]]))
            assert rank.item() == position
    assert torch.all(top_probs[0, :-1] >= top_probs[0, 1:])


def test_a_difference_beyond_tolerance_is_a_parity_error():
    want = [np.zeros((4, 1), np.int64), np.zeros((4, 3), np.int64), np.zeros((4, 3), np.float32)]
    got = [w.copy() for w in want]
    got[2][0, 0] = 0.01
    with pytest.raises(ParityError, match="TOP_PROBS"):
        compare_outputs(DEEPLOG_KEYS, want, got)
    got = [w.copy() for w in want]
    got[0][:, 0] = 1
    with pytest.raises(ParityError, match="RANK"):
        compare_outputs(replace(DEEPLOG_KEYS, max_int_mismatch=0.0), want, got)


def test_calibrated_g_is_the_smallest_meeting_the_false_alarm_target_on_held_out_sessions():
    rng = np.random.default_rng(1)
    sessions = [list(rng.integers(3, VOCAB.size, rng.integers(1, 12))) for _ in range(80)]
    config = replace(CONFIG, top_g=None, false_alarm_target=0.1, holdout=0.25)
    _, report = train_key_model(sessions, VOCAB.size, config, progress=False)
    rates = report.false_alarm_by_g
    assert report.held_out_sessions == 20
    assert rates[report.top_g] <= 0.1
    assert report.top_g == 1 or rates[report.top_g - 1] > 0.1
    assert rates[VOCAB.size] == 0.0  # every key is within the top |vocabulary|
