"""The onnxruntime/pytorch shims read everything from the model config and batch requests."""

import json

import numpy as np
import pytest

from server_config.shims.runners import (
    InvalidInput,
    check_providers,
    onnx_providers,
    run_batched,
    shim_config,
)


def _args(tmp_path, **config):
    version = tmp_path / "1"
    version.mkdir(exist_ok=True)
    (version / "model.onnx").write_bytes(b"")
    base = {
        "name": "m",
        "max_batch_size": 64,
        "input": [{"name": "X", "data_type": "TYPE_INT64", "dims": ["3"]}],
        "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": ["3"]}],
        "parameters": {"intra_op_thread_count": {"string_value": "2"}},
    }
    base.update(config)
    return {
        "model_config": json.dumps(base),
        "model_repository": str(tmp_path),
        "model_version": "1",
        "model_instance_kind": "CPU",
        "model_instance_device_id": "0",
    }


def test_the_config_gives_names_types_batching_and_threads(tmp_path):
    config = shim_config(_args(tmp_path), "model.onnx")
    assert [(t.name, t.dtype) for t in config.inputs] == [("X", np.dtype(np.int64))]
    assert [(t.name, t.dtype) for t in config.outputs] == [("Y", np.dtype(np.float32))]
    assert config.batched and config.gpu_device is None
    assert config.int_parameter("intra_op_thread_count") == 2
    assert config.model_file == tmp_path / "1" / "model.onnx"


def test_a_gpu_instance_names_its_device(tmp_path):
    args = _args(tmp_path)
    args.update(model_instance_kind="GPU", model_instance_device_id="3")
    assert shim_config(args, "model.onnx").gpu_device == 3


def _gpu(tmp_path, **config):
    args = _args(tmp_path, **config)
    args.update(model_instance_kind="GPU", model_instance_device_id="1")
    return shim_config(args, "model.onnx")


def _tensorrt(**parameters):
    accelerator = {"name": "tensorrt", "parameters": parameters}
    return {
        "optimization": {"execution_accelerators": {"gpu_execution_accelerator": [accelerator]}}
    }


def test_onnx_runs_on_the_cpu_provider_on_a_cpu_instance_whatever_the_accelerator(tmp_path):
    config = shim_config(_args(tmp_path, **_tensorrt(precision_mode="FP16")), "model.onnx")
    assert onnx_providers(config) == ["CPUExecutionProvider"]


def test_onnx_runs_on_cuda_on_a_gpu_instance(tmp_path):
    assert onnx_providers(_gpu(tmp_path)) == [
        ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider",
    ]


def test_the_tensorrt_accelerator_in_fp16_goes_first_with_cuda_behind_it(tmp_path):
    config = _gpu(tmp_path, **_tensorrt(precision_mode="FP16", trt_engine_cache_enable="true"))
    assert onnx_providers(config) == [
        (
            "TensorrtExecutionProvider",
            {"device_id": 1, "trt_fp16_enable": True, "trt_engine_cache_enable": True},
        ),
        ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider",
    ]


@pytest.mark.parametrize(
    "parameters, message",
    [({"precision_mode": "INT8"}, "precision_mode 'INT8'"), ({"nope": "1"}, "parameter 'nope'")],
)
def test_tensorrt_settings_it_cannot_honour_are_clear_errors(tmp_path, parameters, message):
    with pytest.raises(ValueError, match=message):
        onnx_providers(_gpu(tmp_path, **_tensorrt(**parameters)))


def test_a_gpu_instance_on_an_onnxruntime_without_cuda_is_refused_not_run_on_the_cpu(tmp_path):
    config = _gpu(tmp_path)
    with pytest.raises(RuntimeError, match="CUDAExecutionProvider not in this onnxruntime"):
        check_providers(config, onnx_providers(config), ["CPUExecutionProvider"])
    check_providers(
        config, onnx_providers(config), ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )


def test_a_missing_model_file_is_a_clear_error(tmp_path):
    args = _args(tmp_path, default_model_filename="other.onnx")
    with pytest.raises(FileNotFoundError, match=r"other\.onnx does not exist"):
        shim_config(args, "model.onnx")


class Doubler:
    def __init__(self):
        self.calls = 0

    def run(self, inputs):
        self.calls += 1
        return {"Y": inputs["X"] * 2}


def test_requests_of_one_shape_run_as_one_batch_and_are_split_back(tmp_path):
    config = shim_config(_args(tmp_path), "model.onnx")
    runner = Doubler()
    requests = [{"X": np.full((n, 3), n)} for n in (1, 4, 2)]
    answers = run_batched(runner, config, requests)
    assert runner.calls == 1
    for n, answer in zip((1, 4, 2), answers, strict=True):
        assert answer["Y"].dtype == np.float32
        np.testing.assert_array_equal(answer["Y"], np.full((n, 3), 2 * n))


def test_a_bad_request_fails_alone(tmp_path):
    config = shim_config(_args(tmp_path), "model.onnx")
    answers = run_batched(Doubler(), config, [{"X": np.ones((2, 3))}, {"Z": np.ones((1, 3))}])
    assert answers[0]["Y"].shape == (2, 3)
    assert isinstance(answers[1], InvalidInput) and "input X is missing" in str(answers[1])


def test_requests_of_other_widths_run_apart_and_the_graph_judges_each(tmp_path):
    config = shim_config(_args(tmp_path), "model.onnx")
    runner = Doubler()
    answers = run_batched(runner, config, [{"X": np.ones((2, 3))}, {"X": np.ones((1, 4))}])
    assert runner.calls == 2
    assert answers[0]["Y"].shape == (2, 3) and answers[1]["Y"].shape == (1, 4)
