"""The work behind the shims, with no Triton import: read the config, batch, run, split.

Unit-tested directly; ``adapter.py`` is the only place that talks to ``pb_utils``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

# Triton data type -> numpy dtype.
NUMPY_DTYPES = {
    "TYPE_BOOL": np.bool_,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: np.dtype


@dataclass(frozen=True)
class ShimConfig:
    """What a shim needs from the model config and Triton's initialize() arguments."""

    model_name: str
    model_file: Path
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    batched: bool
    gpu_device: int | None
    parameters: dict[str, str]
    # optimization.execution_accelerators.gpu_execution_accelerator, name -> its parameters
    gpu_accelerators: dict[str, dict[str, str]] = field(default_factory=dict)

    def int_parameter(self, *keys: str, default: int = 0) -> int:
        for key in keys:
            if key in self.parameters and self.parameters[key].strip():
                return int(self.parameters[key])
        return default


def _tensors(entries: list[dict[str, Any]]) -> tuple[Tensor, ...]:
    return tuple(Tensor(e["name"], np.dtype(NUMPY_DTYPES[e["data_type"]])) for e in entries)


def shim_config(args: dict[str, str], default_filename: str) -> ShimConfig:
    """Build the config from the ``args`` Triton hands to ``initialize``."""
    config = json.loads(args["model_config"])
    filename = config.get("default_model_filename") or default_filename
    model_file = Path(args["model_repository"]) / args["model_version"] / filename
    if not model_file.exists():
        raise FileNotFoundError(f"{config['name']}: model file {model_file} does not exist")
    gpu = args.get("model_instance_kind") == "GPU"
    return ShimConfig(
        model_name=config["name"],
        model_file=model_file,
        inputs=_tensors(config.get("input", [])),
        outputs=_tensors(config.get("output", [])),
        batched=int(config.get("max_batch_size", 0)) > 0,
        gpu_device=int(args.get("model_instance_device_id", 0)) if gpu else None,
        parameters={k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()},
        gpu_accelerators={
            a["name"]: dict(a.get("parameters", {}))
            for a in config.get("optimization", {})
            .get("execution_accelerators", {})
            .get("gpu_execution_accelerator", [])
        },
    )


# Triton's onnxruntime backend reads these TensorRT settings from the accelerator's parameters;
# the same names mean the same here.
TENSORRT_PRECISIONS = {"FP32": {}, "FP16": {"trt_fp16_enable": True}}
TENSORRT_OPTIONS = {
    "max_workspace_size_bytes": ("trt_max_workspace_size", int),
    "trt_engine_cache_enable": ("trt_engine_cache_enable", lambda v: v.lower() == "true"),
    "trt_engine_cache_path": ("trt_engine_cache_path", str),
}


def onnx_providers(config: ShimConfig) -> list[Any]:
    """ONNX Runtime's providers for an instance, best first: the CPU provider on a CPU
    instance; CUDA on a GPU instance, behind TensorRT when the config's GPU accelerator names
    it (precision_mode FP32 or FP16). CPU stays last for the operators the others lack."""
    providers: list[Any] = ["CPUExecutionProvider"]
    if config.gpu_device is None:
        return providers
    device = {"device_id": config.gpu_device}
    providers.insert(0, ("CUDAExecutionProvider", device))
    for name, parameters in config.gpu_accelerators.items():
        if name != "tensorrt":
            raise ValueError(f"{config.model_name}: GPU accelerator {name!r} is not supported")
        options: dict[str, Any] = dict(device)
        for key, value in parameters.items():
            if key == "precision_mode":
                if value not in TENSORRT_PRECISIONS:
                    raise ValueError(
                        f"{config.model_name}: TensorRT precision_mode {value!r}; "
                        f"supported: {', '.join(TENSORRT_PRECISIONS)}"
                    )
                options.update(TENSORRT_PRECISIONS[value])
            elif key in TENSORRT_OPTIONS:
                option, parse = TENSORRT_OPTIONS[key]
                options[option] = parse(value)
            else:
                raise ValueError(f"{config.model_name}: unknown TensorRT parameter {key!r}")
        providers.insert(0, ("TensorrtExecutionProvider", options))
    return providers


class InvalidInput(ValueError):
    """A request without one of the model's inputs: answered INVALID_ARGUMENT, never run."""


class Runner(Protocol):
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def check_providers(config: ShimConfig, providers: list[Any], available: list[str]) -> None:
    """Refuse a provider this onnxruntime build lacks: ONNX Runtime would fall back to the CPU
    with only a warning, and a "GPU" model would quietly run (and be measured) on the CPU."""
    names = [p if isinstance(p, str) else p[0] for p in providers]  # str or (name, options)
    missing = [name for name in names if name not in available]
    if missing:
        raise RuntimeError(
            f"{config.model_name}: {', '.join(missing)} not in this onnxruntime build "
            f"(available: {', '.join(available)}); a GPU instance needs onnxruntime-gpu"
        )


class OnnxRunner:
    """An ONNX Runtime session: CUDA (or TensorRT) on a GPU instance, set threads on CPU."""

    def __init__(self, config: ShimConfig) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = config.int_parameter("intra_op_thread_count")
        options.inter_op_num_threads = config.int_parameter("inter_op_thread_count")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = onnx_providers(config)
        check_providers(config, providers, ort.get_available_providers())
        self.session = ort.InferenceSession(str(config.model_file), options, providers=providers)
        self.output_names = [t.name for t in config.outputs]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(
            zip(self.output_names, self.session.run(self.output_names, inputs), strict=True)
        )


class TorchScriptRunner:
    """A TorchScript module; inputs go positionally in config order, as in Triton's backend."""

    def __init__(self, config: ShimConfig) -> None:
        import torch

        threads = config.int_parameter("INTRA_OP_THREAD_COUNT", "intra_op_thread_count")
        if threads > 0:
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = torch.device(
            f"cuda:{config.gpu_device}" if config.gpu_device is not None else "cpu"
        )
        self.module = torch.jit.load(str(config.model_file), map_location=self.device).eval()
        self.input_names = [t.name for t in config.inputs]
        self.output_names = [t.name for t in config.outputs]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            args = [torch.from_numpy(inputs[n]).to(self.device) for n in self.input_names]
            result = self.module(*args)
        if isinstance(result, torch.Tensor):
            result = (result,)
        return {n: t.cpu().numpy() for n, t in zip(self.output_names, result, strict=True)}


def run_batched(
    runner: Runner, config: ShimConfig, requests: list[dict[str, np.ndarray]]
) -> list[dict[str, np.ndarray] | Exception]:
    """Run many requests, as few model calls as possible; one answer (or error) per request.

    Requests whose inputs have the same shape beyond the batch axis are concatenated and run
    once; a request that fails validation gets its own error and does not fail the others.
    """
    answers: list[dict[str, np.ndarray] | Exception] = [ValueError("not run")] * len(requests)
    groups: dict[tuple, list[int]] = {}
    for i, request in enumerate(requests):
        try:
            checked = _checked_inputs(config, request)
        except InvalidInput as exc:
            answers[i] = exc
            continue
        requests[i] = checked
        # Unbatched models run each request alone; batched ones merge requests of equal shape.
        key = tuple(a.shape[1:] for a in checked.values()) if config.batched else (i,)
        groups.setdefault(key, []).append(i)
    for members in groups.values():
        try:
            if len(members) == 1:
                answers[members[0]] = _cast(config, runner.run(requests[members[0]]))
                continue
            merged = {
                t.name: np.concatenate([requests[i][t.name] for i in members])
                for t in config.inputs
            }
            out = _cast(config, runner.run(merged))
            sizes = [len(requests[i][config.inputs[0].name]) for i in members]
            bounds = np.cumsum(sizes)[:-1]
            pieces = {name: np.split(value, bounds) for name, value in out.items()}
            for k, i in enumerate(members):
                answers[i] = {name: parts[k] for name, parts in pieces.items()}
        except Exception as exc:  # a model error fails this group's requests, not the server
            for i in members:
                answers[i] = RuntimeError(f"{config.model_name}: {exc}")
    return answers


def _checked_inputs(config: ShimConfig, request: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every input there, as the dtype the config says. Nothing about values or widths: the
    graph flags what it cannot judge (export/input_guard.py), as on Triton's native backend,
    since a step refused here inside an ensemble makes Triton 2.51's scheduler hang or hand
    other requests' corrupted string inputs on (measured: 341 of 500 concurrent valid
    log_anomaly requests failed so)."""
    checked = {}
    for tensor in config.inputs:
        if tensor.name not in request or request[tensor.name] is None:
            raise InvalidInput(f"{config.model_name}: input {tensor.name} is missing")
        checked[tensor.name] = np.ascontiguousarray(request[tensor.name], dtype=tensor.dtype)
    return checked


def _cast(config: ShimConfig, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {t.name: np.asarray(outputs[t.name], dtype=t.dtype) for t in config.outputs}
