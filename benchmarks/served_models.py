"""The models `make bench` measures: the product's embedded default, as `make demo` trains it,
published into a repository of the benchmark's own (build/bench/), and how to serve it on a GPU.

Throughput depends on the models' shapes (h, layers, RoBERTa size, vocabulary), which are the
demo's; the repository is kept between runs and trained again only when it is missing.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from client.ops.demo import DemoConfig, train_demo_models
from client.ops.training import session_keys, train_and_publish_steps
from client.ops.workload import WorkloadConfig, generate_workload
from export.contract.metas import KeyModelMeta
from export.contract.specs import (
    ASGNET_GNET,
    ASGNET_SNET,
    ASGNET_VNET,
    DEEPLOG_KEYS,
    DEEPLOG_PARAMS,
    DEEPLOG_PARAMS_TORCHSCRIPT,
    DEEPLOG_STEPS,
)
from export.deeplog_steps import StepModelConfig
from export.repository import write_config

BENCH_DIR = Path("build/bench")
# The models with a GPU build (the tokenizer is Python code and stays on the CPU).
GPU_MODELS = (
    DEEPLOG_KEYS,
    DEEPLOG_STEPS,
    DEEPLOG_PARAMS,
    DEEPLOG_PARAMS_TORCHSCRIPT,
    ASGNET_SNET,
    ASGNET_VNET,
    ASGNET_GNET,
)
ONNX_GPU_MODELS = tuple(m for m in GPU_MODELS if m.backend == "onnxruntime")


@dataclass(frozen=True)
class BenchModels:
    repository: Path
    workdir: Path  # build/bench: the server's log goes here


def bench_models(workdir: Path = BENCH_DIR, retrain: bool = False) -> BenchModels:
    """The demo's models in ``workdir/model_repository``, trained if missing (about a minute),
    and the stepwise key model on the demo's training log with its defaults."""
    repository = workdir / "model_repository"
    marker = workdir / "models.json"
    config = replace(DemoConfig(), repository=repository, workdir=workdir / "demo")
    if retrain or not marker.exists():
        if repository.exists():
            shutil.rmtree(repository)
        models = train_demo_models(config)
        marker.write_text(
            json.dumps(
                {
                    "deeplog_keys": models.version,
                    "deeplog_params": models.param_version,
                    "asgnet": models.asgnet_version,
                }
            )
        )
    trained = json.loads(marker.read_text())
    if DEEPLOG_STEPS.name not in trained:
        trained[DEEPLOG_STEPS.name] = train_bench_steps(config, trained[DEEPLOG_KEYS.name])
        marker.write_text(json.dumps(trained))
    return BenchModels(repository, workdir)


def train_bench_steps(config: DemoConfig, key_version: int) -> int:
    """The stepwise key model on the demo's training log, over the key model's vocabulary
    (the two must name the same keys); returns its version."""
    vocabulary = KeyModelMeta.load(config.repository, key_version).vocabulary
    lines = generate_workload(WorkloadConfig(config.train_blocks, 0.0, config.seed)).lines
    sessions = list(session_keys(lines, vocabulary).values())
    return train_and_publish_steps(
        sessions,
        vocabulary,
        config.repository,
        StepModelConfig(seed=config.seed),
        source=f"demo workload seed {config.seed}",
    )


def generated_log(blocks: int, seed: int) -> list[bytes]:
    """More of the demo's HDFS-like log (5% anomalous blocks), for the end-to-end runs."""
    return generate_workload(WorkloadConfig(blocks, 0.05, seed)).lines


def place_models(repository: Path, device: str, tensorrt_fp16: bool = False) -> None:
    """Write the benchmark copy's configs for ``device``: as exported for "cpu" (the server
    decides, CPU here), or the GPU-capable models on KIND_GPU for "gpu" (CUDA execution
    provider, or TensorRT with FP16 for the ONNX models when asked). Written every run, so a
    GPU run does not leave its settings to the next CPU run."""
    for spec in GPU_MODELS:
        path = write_config(repository, spec)
        if device != "gpu":
            continue
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        config.instance_group.add(kind=model_config_pb2.ModelInstanceGroup.KIND_GPU, count=1)
        if tensorrt_fp16 and spec in ONNX_GPU_MODELS:
            trt = config.optimization.execution_accelerators.gpu_execution_accelerator.add(
                name="tensorrt"
            )
            trt.parameters["precision_mode"] = "FP16"
        path.write_text(text_format.MessageToString(config))
