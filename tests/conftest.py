"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from export.hdfs_data import DataMissing, data_dir

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def hdfs_dir() -> Path:
    """../shared/data/hdfs, or a skip that says what is missing."""
    try:
        return data_dir()
    except DataMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def loghub_dir() -> Path:
    folder = SHARED_DATA / "loghub"
    if not folder.is_dir():
        pytest.skip(f"{folder} is missing: the loghub samples live in ../shared/data")
    return folder


class _Tensor:
    def __init__(self, name, array):
        self.name, self.array = name, array

    def as_numpy(self):
        return self.array


class _TritonError(str):
    """pb_utils.TritonError: a message with a code; compares as its message."""

    INTERNAL, INVALID_ARG = "INTERNAL", "INVALID_ARG"

    def __new__(cls, message, code="INTERNAL"):
        error = super().__new__(cls, message)
        error.code = code
        return error


class _Response:
    def __init__(self, output_tensors=(), error=None):
        self.outputs = {t.name: t.array for t in output_tensors}
        self.error = error


@pytest.fixture
def pb_utils(monkeypatch):
    """The slice of Triton's triton_python_backend_utils our model.py files use; a request is
    a dict of input name -> numpy array."""
    stub = types.ModuleType("triton_python_backend_utils")
    stub.Tensor, stub.InferenceResponse, stub.TritonError = _Tensor, _Response, _TritonError
    stub.get_input_tensor_by_name = lambda request, name: (
        _Tensor(name, request[name]) if name in request else None
    )
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", stub)
    return stub


TINY_ASGNET_ROWS = 600  # of robust_log_train.csv: enough for every stage to learn something


@pytest.fixture(scope="session")
def tiny_asgnet_config():
    """ASGNet sized to train in seconds on a few hundred sessions."""
    from export.asgnet import AsgnetConfig
    from export.snet import SNetConfig
    from export.vnet import VNetConfig

    return AsgnetConfig(
        snet=SNetConfig(
            hidden=32,
            layers=1,
            heads=2,
            intermediate=64,
            max_length=64,
            info_dim=16,
            mlm_epochs=1,
            batch_size=16,
        ),
        vnet=VNetConfig(hidden=32, latent=8, epochs=20, batch_size=16),
        tokenizer_vocab=400,
        finetune_epochs=3,
        finetune_learning_rate=1e-3,
    )


@pytest.fixture(scope="session")
def tiny_asgnet(hdfs_dir, tiny_asgnet_config):
    """A small ASGNet trained on real HDFS sessions, with its splits: what the unit and
    integration tests export, serve and compare."""
    import numpy as np

    from benchmarks.evaluations.asgnet import hdfs_dataset
    from export.asgnet import Units, stratified_split, train_asgnet

    data = hdfs_dataset(hdfs_dir.parent)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(data.keys), TINY_ASGNET_ROWS, replace=False)
    labels = [data.labels[i] for i in rows]
    splits = [
        Units.from_rows(
            [data.keys[rows[i]] for i in part],
            [labels[i] for i in part],
            [data.names[rows[i]] for i in part],
        )
        for part in stratified_split(labels, (0.6, 0.2, 0.2), rng)
    ]
    trained = train_asgnet(
        splits[0], splits[1], data.vocabulary, data.classes, tiny_asgnet_config, progress=False
    )
    return trained, splits
