"""ASGNet: units and splits, the gate, early stopping, training, export parity, the index."""

from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.asgnet import ABLATION, Units, ablation, predict, stratified_split, train_asgnet
from export.contract.metas import AsgnetMeta, read_meta
from export.contract.specs import ASGNET, ASGNET_SIMILAR, LOG_ANOMALY
from export.fitting import EarlyStopping
from export.gnet import GNet, GNetConfig
from export.log_tokenizer import save_tokenizer
from export.metrics import classification_scores
from export.publish_asgnet import ASGNET_MODELS, publish_asgnet
from export.repository import versions


def test_identical_rows_become_one_weighted_unit():
    units = Units.from_rows([[3, 4], [3, 4], [5], [3, 4]], [0, 0, 1, 1], ["a", "b", "c", "d"])
    assert units.keys == ((3, 4), (5,), (3, 4))
    assert units.labels.tolist() == [0, 1, 1]
    assert units.weights.tolist() == [2, 1, 1]
    assert units.names == ("a", "c", "d")  # the first row's name


def test_a_stratified_split_covers_every_row_once_and_puts_rare_classes_everywhere():
    labels = [0] * 50 + [1] * 3 + [2] * 10
    parts = stratified_split(labels, (0.6, 0.2, 0.2), np.random.default_rng(0))
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(labels)))
    for part in parts:
        assert {labels[i] for i in part} == {0, 1, 2}


def test_the_gate_only_touches_units_below_the_confidence_threshold():
    torch.manual_seed(0)
    gnet = GNet(info_dim=4, latent_dim=3, classes=2, config=GNetConfig(threshold=0.8)).eval()
    features, latent = torch.randn(2, 4), torch.randn(2, 3)
    routed = gnet.route(features, torch.tensor([[0.95], [0.5]]), latent)
    assert torch.equal(routed[0], features[0])  # confident: semantic features as they are
    assert torch.allclose(routed[1], gnet.fuse(features, latent)[1])  # unsure: fused
    assert not torch.allclose(routed[1], features[1])


def test_early_stopping_stops_after_patience_and_restores_the_best_epoch():
    model = torch.nn.Linear(1, 1)
    scores = iter([0.5, 0.9, 0.7, 0.6])
    stopping = EarlyStopping(lambda: next(scores), patience=2)
    decisions = []
    for epoch in range(4):
        with torch.no_grad():
            model.weight.fill_(epoch)
        decisions.append(stopping.update(model))
    assert decisions == [False, False, False, True]
    stopping.restore(model)
    assert model.weight.item() == 1.0 and stopping.best_epoch == 1


def test_early_stopping_keeps_the_later_of_two_equally_good_epochs():
    model = torch.nn.Linear(1, 1)
    scores = iter([0.9, 0.9, 0.5])
    stopping = EarlyStopping(lambda: next(scores), patience=2)
    for epoch in range(3):
        with torch.no_grad():
            model.weight.fill_(epoch)
        stopping.update(model)
    stopping.restore(model)
    assert model.weight.item() == 1.0 and stopping.best_epoch == 1


def test_scores_count_each_unit_as_often_as_it_occurred():
    truth, predicted = np.array([0, 1, 1, 2]), np.array([0, 1, 0, 2])
    scores = classification_scores(truth, predicted, ("normal", "a", "b"), np.array([1, 3, 1, 1.0]))
    a = scores.per_class[1]
    assert (a.support, a.precision, a.recall) == (4, 1.0, 0.75)
    assert scores.anomaly == pytest.approx((1.0, 0.8, 8 / 9))


def test_training_keeps_the_best_checkpoint_and_beats_chance_on_real_sessions(tiny_asgnet):
    trained, (_, _, test) = tiny_asgnet
    report = trained.report
    assert report["gnet_validation_f1"] == max(report["gnet_validation_f1"], 0)
    assert 1 <= report["finetune_best_epoch"] <= report["finetune_epochs_run"]
    scores, gated = ablation(trained, test)
    assert set(scores) == set(ABLATION)
    assert scores["ASGNet (gated)"].macro_f1 > 0.6  # balanced classes: chance is about 0.5
    assert 0.0 <= gated <= 1.0


def test_a_local_checkpoint_is_fine_tuned_with_its_own_tokenizer_instead_of_pretraining(
    tiny_asgnet, tiny_asgnet_config, tmp_path
):
    trained, (train, validation, _) = tiny_asgnet
    trained.snet.encoder.save_pretrained(tmp_path)
    save_tokenizer(trained.tokenizer, tmp_path)
    config = replace(tiny_asgnet_config, finetune_epochs=1)
    again = train_asgnet(
        train, validation, trained.vocabulary, trained.classes, config, tmp_path, progress=False
    )
    assert again.report["encoder"] == str(tmp_path)
    assert "mlm_s" not in again.report["seconds"]
    assert again.tokenizer.get_vocab() == trained.tokenizer.get_vocab()


def test_published_models_share_a_version_agree_with_pytorch_and_index_the_units(
    tiny_asgnet, tmp_path
):
    trained, (train, _, _) = tiny_asgnet
    version = publish_asgnet(trained, train, tmp_path)
    for spec in ASGNET_MODELS:
        assert versions(tmp_path, spec.name) == [version]
    for spec in ASGNET_MODELS[1:]:  # the ONNX ones: parity checked at export, recorded in meta
        parity = read_meta(tmp_path, spec.name, version)["parity"]
        assert all(diff <= spec.atol for diff, _ in parity.values()), parity
    for ensemble in (ASGNET, LOG_ANOMALY):
        assert (tmp_path / ensemble.name / "1").is_dir()
    meta = AsgnetMeta.load(tmp_path, version)
    assert meta.classes == trained.classes and meta.vocabulary == trained.vocabulary

    assert [u.unit for u in meta.indexed] == list(train.names)  # row i is training unit i
    search = ort.InferenceSession(str(tmp_path / ASGNET_SIMILAR.name / str(version) / "model.onnx"))
    features = predict(trained, train).features
    rows, distances = search.run(ASGNET_SIMILAR.output_names, {"FEATURES": features[:5]})
    assert rows.shape == distances.shape == (5, 3)
    assert np.all(np.diff(distances, axis=1) >= 0)  # nearest first
    for i in range(5):
        assert distances[i, 0] == pytest.approx(0.0, abs=1e-5)  # a unit finds itself first
        assert meta.indexed[rows[i, 0]].label == trained.classes[train.labels[i]]
    expected = ((features[:5, None, :] - features[None]) ** 2).sum(-1)  # what IndexFlatL2 gives
    np.testing.assert_allclose(distances, np.sort(expected, axis=1)[:, :3], atol=1e-4)
