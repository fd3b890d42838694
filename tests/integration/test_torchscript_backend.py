"""The `pytorch` backend shim serves a standard TorchScript model folder."""

from pathlib import Path

import numpy as np
import pytest
import torch

from client.triton_client import TritonClient
from export.contract.specs import DEEPLOG_KEYS, torchscript_variant
from export.deeplog_keys import KeyLSTM, KeyModelConfig, KeyModelServing
from export.repository import write_version

TORCHSCRIPT_KEYS = torchscript_variant(DEEPLOG_KEYS)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_a_torchscript_model_answers_like_pytorch(repository: Path, triton: TritonClient):
    torch.manual_seed(0)
    config = KeyModelConfig(hidden=16, embedding=8)
    serving = KeyModelServing(KeyLSTM(12, config), config.top_g).eval()
    windows = torch.randint(0, 12, (5, config.window))
    next_key = torch.randint(0, 12, (5, 1))

    def fill(folder: Path, version: int) -> dict:
        torch.jit.trace(serving, (windows, next_key)).save(str(folder / "model.pt"))
        return {}

    version = write_version(repository, TORCHSCRIPT_KEYS, fill)
    triton.load_model(TORCHSCRIPT_KEYS.name)
    probe = np.random.default_rng(1).integers(0, 12, (33, config.window + 1))
    answer = triton.infer(
        TORCHSCRIPT_KEYS.name,
        {"WINDOWS": probe[:, :-1].copy(), "NEXT_KEY": probe[:, -1:].copy()},
        TORCHSCRIPT_KEYS.output_names,
        version=version,
    )
    with torch.no_grad():
        rank, top_keys, top_probs = serving(
            torch.from_numpy(probe[:, :-1]), torch.from_numpy(probe[:, -1:])
        )
    np.testing.assert_array_equal(answer.outputs["RANK"], rank.numpy())
    np.testing.assert_array_equal(answer.outputs["TOP_KEYS"], top_keys.numpy())
    np.testing.assert_allclose(answer.outputs["TOP_PROBS"], top_probs.numpy(), rtol=1e-5)
    assert answer.model_version == str(version)
