"""ASGNet's V-Net: statistical vectors, unsupervised training, ONNX export."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from export.contract.specs import ASGNET_VNET
from export.contract.units import count_vectors
from export.input_guard import InputGuard, widths_of
from export.onnx_export import check_parity, export_onnx
from export.vnet import VNetConfig, train_vnet

CONFIG = VNetConfig(hidden=16, latent=4, epochs=60, batch_size=32)


def _units(rng: np.random.Generator) -> list[list[int]]:
    """Two kinds of unit: keys 0-2 repeated, or keys 3-5 repeated."""
    return [
        list(rng.choice([0, 1, 2] if i % 2 else [3, 4, 5], rng.integers(5, 30))) for i in range(200)
    ]


@pytest.fixture(scope="module")
def trained():
    counts = count_vectors(_units(np.random.default_rng(0)), size=8)
    return counts, *train_vnet(counts, CONFIG, progress=False)


def test_a_statistical_vector_is_log_counts_of_each_key():
    vectors = count_vectors([[1, 1, 1, 4], [9, 0]], size=5)  # key 9 is outside: dropped
    np.testing.assert_allclose(vectors[0], np.log1p([0, 3, 0, 0, 1]))
    np.testing.assert_allclose(vectors[1], np.log1p([1, 0, 0, 0, 0]))


def test_training_lowers_the_negative_elbo(trained):
    counts, model, report = trained
    untrained = train_vnet(counts, replace(CONFIG, epochs=0), False)[0]
    with torch.no_grad():
        x = torch.from_numpy(counts)
        torch.manual_seed(0)
        before = untrained.elbo_loss(x, CONFIG.beta).item()
        torch.manual_seed(0)
        after = model.elbo_loss(x, CONFIG.beta).item()
    assert after < 0.5 * before
    assert report.units == 200


def test_the_latent_mean_separates_units_of_different_kinds(trained):
    counts, model, _ = trained
    with torch.no_grad():
        latent = model(torch.from_numpy(counts)).numpy()
    odd, even = latent[1::2].mean(axis=0), latent[::2].mean(axis=0)
    spread = latent[1::2].std(axis=0).mean() + latent[::2].std(axis=0).mean()
    assert np.linalg.norm(odd - even) > spread


@pytest.mark.parametrize("batch", [1, 64])
def test_onnx_runtime_agrees_with_pytorch(trained, tmp_path, batch):
    counts, model, _ = trained
    example = {"COUNTS": torch.from_numpy(counts[:2])}
    guard = InputGuard(model, ASGNET_VNET, {}, widths_of(ASGNET_VNET, example)).eval()
    path = export_onnx(guard, example, tmp_path / "model.onnx")
    parity = check_parity(model, ASGNET_VNET, {"COUNTS": counts[:batch]}, path)
    assert parity[0].max_abs_diff <= ASGNET_VNET.atol
