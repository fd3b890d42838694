"""One I/O spec per model: it drives the ONNX export, the config.pbtxt and the parity check."""

from __future__ import annotations

from dataclasses import dataclass, field

# What an exported graph checks its integer inputs against (export/input_guard.py): input
# name -> [low, high). Float inputs must be finite.
IdRanges = dict[str, tuple[int, int]]

# numpy dtype name -> Triton data type, for every type our models exchange.
TRITON_DTYPES = {
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "bool": "TYPE_BOOL",
    "bytes": "TYPE_STRING",
}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor as Triton sees it: dims exclude the batch dimension, -1 means variable."""

    name: str
    dtype: str
    dims: tuple[int, ...]
    dynamic_names: tuple[str, ...] = ()  # ONNX axis names of the -1 dims, in order

    @property
    def triton_dtype(self) -> str:
        return TRITON_DTYPES[self.dtype]


@dataclass(frozen=True)
class EnsembleStep:
    """One model run inside an ensemble: its tensor names -> the ensemble's tensor names."""

    model: str
    inputs: dict[str, str]
    outputs: dict[str, str]


@dataclass(frozen=True)
class ModelSpec:
    """Everything about a served model that is not its weights."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    backend: str = "onnxruntime"
    max_batch_size: int = 8192
    default_model_filename: str = "model.onnx"
    opset: int = 18
    # Parity between PyTorch and the exported model: float outputs within atol/rtol; integer
    # outputs (ranks, top keys) may flip where two scores tie within float noise, so a small
    # fraction of mismatches is allowed.
    atol: float = 1e-4
    rtol: float = 1e-4
    max_int_mismatch: float = 0.001
    max_queue_delay_us: int = 200
    # Versions served at once: two, so a new version loads while the old one keeps answering.
    num_versions: int = 2
    parameters: dict[str, str] = field(default_factory=dict)
    # Axes (by dynamic name) that are -1 in config.pbtxt because they differ between versions,
    # but are fixed within one version (e.g. a vector width set by the training data); its
    # graph takes any width and flags another than its own (export/input_guard.py).
    fixed_axes: tuple[str, ...] = ()
    # An ensemble (platform "ensemble") runs these steps instead of weights of its own.
    steps: tuple[EnsembleStep, ...] = ()

    @property
    def is_ensemble(self) -> bool:
        return bool(self.steps)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]
