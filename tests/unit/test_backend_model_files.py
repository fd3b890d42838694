"""The backend model.py files, loaded by path as Triton loads them, with a pb_utils stub."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import json_format

from export.contract.specs import DEEPLOG_KEYS
from export.deeplog_keys import KeyLSTM, KeyModelConfig, KeyModelServing
from export.input_guard import InputGuard, widths_of
from export.onnx_export import export_onnx
from export.repository import model_config

BACKENDS = Path(__file__).resolve().parents[2] / "server_config" / "backends"


@pytest.fixture
def backends_on_path(pb_utils, monkeypatch):
    monkeypatch.syspath_prepend(str(BACKENDS))  # where Triton's stub finds stub_path.py
    return pb_utils


def _load(backend: str):
    spec = importlib.util.spec_from_file_location(
        f"{backend}_model", BACKENDS / backend / "model.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TritonPythonModel()


def test_the_onnxruntime_backend_serves_an_onnx_model_folder(backends_on_path, tmp_path):
    torch.manual_seed(0)
    config = KeyModelConfig(hidden=8, embedding=4, window=4, top_g=2)
    example = {
        "WINDOWS": torch.zeros((2, 4), dtype=torch.int64),
        "NEXT_KEY": torch.zeros((2, 1), dtype=torch.int64),
    }
    serving = InputGuard(
        KeyModelServing(KeyLSTM(7, config), config.top_g),
        DEEPLOG_KEYS,
        {"WINDOWS": (0, 7), "NEXT_KEY": (0, 7)},
        widths_of(DEEPLOG_KEYS, example),
    ).eval()
    (tmp_path / "1").mkdir()
    export_onnx(serving, example, tmp_path / "1" / "model.onnx")
    model = _load("onnxruntime")
    model.initialize(
        {
            "model_config": json.dumps(
                json_format.MessageToDict(
                    model_config(DEEPLOG_KEYS), preserving_proto_field_name=True
                )
            ),
            "model_repository": str(tmp_path),
            "model_version": "1",
            "model_instance_kind": "CPU",
            "model_instance_device_id": "0",
        }
    )
    windows = np.random.default_rng(0).integers(0, 7, (5, 4))
    requests = [
        {"WINDOWS": windows[:3], "NEXT_KEY": np.array([[1], [2], [3]])},
        {"WINDOWS": windows[3:], "NEXT_KEY": np.array([[4], [5]])},
        {"WINDOWS": windows[:1]},  # NEXT_KEY missing: this request fails, alone
        {"WINDOWS": windows[:1, :3], "NEXT_KEY": np.array([[1]])},  # h is 4
        {"WINDOWS": windows[:1], "NEXT_KEY": np.array([[-1]])},  # ONNX would read key 6
    ]
    responses = model.execute(requests)
    with torch.no_grad():
        rank, top_keys, _ = serving(
            torch.from_numpy(windows), torch.tensor([[1], [2], [3], [4], [5]])
        )
    np.testing.assert_array_equal(responses[0].outputs["RANK"], rank[:3].numpy())
    np.testing.assert_array_equal(responses[1].outputs["TOP_KEYS"], top_keys[3:].numpy())
    assert "NEXT_KEY is missing" in responses[2].error
    assert responses[2].error.code == "INVALID_ARG"
    # A window of another width or an id outside the vocabulary is answered, flagged by the
    # graph: rank -1, NaN.
    assert responses[3].error is None and responses[3].outputs["RANK"][0, 0] == -1
    assert responses[4].error is None and responses[4].outputs["RANK"][0, 0] == -1
    model.finalize()


def test_model_files_stay_thin():
    for path in BACKENDS.glob("*/model.py"):
        assert len(path.read_text().splitlines()) < 200, path
