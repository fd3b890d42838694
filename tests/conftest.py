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


class _Response:
    def __init__(self, output_tensors=(), error=None):
        self.outputs = {t.name: t.array for t in output_tensors}
        self.error = error


@pytest.fixture
def pb_utils(monkeypatch):
    """The slice of Triton's triton_python_backend_utils our model.py files use; a request is
    a dict of input name -> numpy array."""
    stub = types.ModuleType("triton_python_backend_utils")
    stub.Tensor, stub.InferenceResponse, stub.TritonError = _Tensor, _Response, str
    stub.get_input_tensor_by_name = lambda request, name: (
        _Tensor(name, request[name]) if name in request else None
    )
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", stub)
    return stub
