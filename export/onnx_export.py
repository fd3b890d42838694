"""ONNX export driven by a ModelSpec, and the check that ONNX Runtime agrees with PyTorch."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from export.contract.io_spec import ModelSpec
from export.input_guard import InputGuard, fixed_dims


class ParityError(RuntimeError):
    """The exported model does not compute what the PyTorch model computes."""


@dataclass(frozen=True)
class OutputParity:
    name: str
    max_abs_diff: float  # float outputs
    mismatch_fraction: float  # integer outputs


class Capture(Enum):
    """How the exporter captures the model's graph."""

    # torch.export (the default exporter): every other model.
    EXPORT = "torch.export"
    # The TorchScript tracer: torch.export fixes an LSTM's sequence length at the example's
    # (its LSTM decomposition guards on it), which a model stepped over any number of keys
    # cannot have.
    TRACE = "torchscript trace"


def export_onnx(
    guard: InputGuard,
    example: dict[str, torch.Tensor],
    path: Path,
    capture: Capture = Capture.EXPORT,
) -> Path:
    """Export a guarded model with its spec's tensor names, batch axis and dynamic axes.

    Every variable axis is dynamic in the graph, the version's fixed ones too (the guard fits
    them), so a request of another width is flagged by the graph, not failed by the runtime.
    A fixed axis gets a dimension per input: two inputs of wrong widths need not agree."""
    if capture is Capture.TRACE:
        _trace_onnx(guard, example, path)
    else:
        _export_onnx(guard, example, path)
    onnx.checker.check_model(str(path))
    graph = onnx.load(str(path), load_external_data=False).graph
    names = [o.name for o in graph.output]
    spec = guard.spec
    if names != spec.output_names:
        raise ParityError(f"exported outputs {names} differ from the spec's {spec.output_names}")
    _check_dynamic_inputs(graph, spec)
    return path


def _trace_onnx(guard: InputGuard, example: dict[str, torch.Tensor], path: Path) -> None:
    spec = guard.spec
    axes: dict[str, dict[int, str]] = {}
    for tensor in (*spec.inputs, *spec.outputs):
        named = {0: "batch"} if spec.max_batch_size > 0 else {}
        for axis, axis_name in fixed_dims(tensor):
            fixed = axis_name in spec.fixed_axes and tensor in spec.inputs
            named[axis] = f"{tensor.name.lower()}_{axis_name}" if fixed else axis_name
        axes[tensor.name] = named
    guard.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            guard,
            tuple(example[name] for name in spec.input_names),
            str(path),
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=axes,
            opset_version=spec.opset,
            dynamo=False,
        )


def _export_onnx(guard: InputGuard, example: dict[str, torch.Tensor], path: Path) -> None:
    module, spec = guard, guard.spec
    batch = torch.export.Dim("batch", min=1, max=max(spec.max_batch_size, 2))
    named: dict[str, torch.export.Dim] = {}
    dynamic_shapes = []
    for tensor in spec.inputs:
        axes = {0: batch} if spec.max_batch_size > 0 else {}
        for axis, axis_name in fixed_dims(tensor):
            if axis_name in spec.fixed_axes:
                axis_name = f"{tensor.name.lower()}_{axis_name}"
            axes[axis] = named.setdefault(axis_name, torch.export.Dim(axis_name, min=1))
        dynamic_shapes.append(axes)
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(
            module,
            tuple(example[name] for name in spec.input_names),
            str(path),
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_shapes=(tuple(dynamic_shapes),),  # the guard's forward takes *inputs
            opset_version=spec.opset,
            dynamo=True,
            verbose=False,
            external_data=False,
        )


def _check_dynamic_inputs(graph: onnx.GraphProto, spec: ModelSpec) -> None:
    """Every variable axis of the spec's inputs is variable in the graph. When torch.export
    cannot keep an axis dynamic, the exporter falls back to a capture that silently fixes it
    at the example's size, and the server would refuse every other size."""
    found = {i.name: i.type.tensor_type.shape.dim for i in graph.input}
    for tensor in spec.inputs:
        axes = [axis for axis, _ in fixed_dims(tensor)]
        if spec.max_batch_size > 0:
            axes.insert(0, 0)
        for axis in axes:
            dim = found[tensor.name][axis]
            if not dim.dim_param:
                raise ParityError(
                    f"{spec.name}: the exporter fixed axis {axis} of {tensor.name} at "
                    f"{dim.dim_value}; the model must keep it variable"
                )


def check_parity(
    module: torch.nn.Module, spec: ModelSpec, probe: dict[str, np.ndarray], path: Path
) -> list[OutputParity]:
    """Run PyTorch and ONNX Runtime on the same probe inputs; raise ParityError if they differ."""
    with torch.no_grad():
        expected = _as_tuple(module(*(torch.from_numpy(probe[n]) for n in spec.input_names)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(spec.output_names, {n: probe[n] for n in spec.input_names})
    return compare_outputs(spec, [t.numpy() for t in expected], actual)


def compare_outputs(
    spec: ModelSpec, expected: list[np.ndarray], actual: list[np.ndarray]
) -> list[OutputParity]:
    """Compare two runtimes' outputs under the spec's tolerances."""
    results = []
    for tensor, want, got in zip(spec.outputs, expected, actual, strict=True):
        if want.shape != got.shape:
            raise ParityError(f"{tensor.name}: shape {got.shape}, expected {want.shape}")
        if np.issubdtype(want.dtype, np.floating):
            diff = float(np.max(np.abs(want - got))) if want.size else 0.0
            if not np.allclose(want, got, atol=spec.atol, rtol=spec.rtol):
                raise ParityError(f"{tensor.name}: max |diff| {diff:.2e} above atol {spec.atol}")
            results.append(OutputParity(tensor.name, diff, 0.0))
        else:
            mismatch = float(np.mean(want != got)) if want.size else 0.0
            if mismatch > spec.max_int_mismatch:
                raise ParityError(
                    f"{tensor.name}: {mismatch:.2%} of values differ "
                    f"(allowed {spec.max_int_mismatch:.2%})"
                )
            results.append(OutputParity(tensor.name, 0.0, mismatch))
    return results


def parity_summary(parity: list[OutputParity]) -> dict[str, list[float]]:
    """What a version's meta.json records of its parity check: name -> [max |diff|, mismatch]."""
    return {p.name: [p.max_abs_diff, p.mismatch_fraction] for p in parity}


def export_torchscript(guard: InputGuard, example: dict[str, torch.Tensor], path: Path) -> Path:
    """Trace a guarded model to TorchScript; inputs are positional in the spec's order, as the
    ``pytorch`` backend passes them."""
    module, spec = guard, guard.spec
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks inside nn.LSTM
        traced = torch.jit.trace(module, tuple(example[name] for name in spec.input_names))
    traced.save(str(path))
    return path


def check_torchscript_parity(
    module: torch.nn.Module, spec: ModelSpec, probe: dict[str, np.ndarray], path: Path
) -> list[OutputParity]:
    """Run PyTorch and the saved TorchScript on the same probe; raise ParityError if they differ."""
    inputs = [torch.from_numpy(probe[n]) for n in spec.input_names]
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        expected = _as_tuple(module(*inputs))
        actual = _as_tuple(loaded(*inputs))
    return compare_outputs(spec, [t.numpy() for t in expected], [t.numpy() for t in actual])


def _as_tuple(result: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return (result,) if isinstance(result, torch.Tensor) else tuple(result)
