"""Input checks inside the exported graph, so every server that runs it flags bad input.

An embedding indexes its table with whatever id it is given: ONNX's Gather wraps negative ids
(key -1 is answered as the last key) and fails on ids past the table with an internal error;
NaN or inf propagates into answers that look like answers (or into finite ones, through an
LSTM's saturating gates); a tensor of the wrong width fails inside the runtime. ``InputGuard``
wraps a model for export: a row holding an id outside its range or a non-finite float is run on
harmless values (ids clamped, floats zeroed) and its answers are poisoned, NaN in float outputs
and -1 in integer ones, which no valid answer holds. The widths one version fixes (its window,
its vocabulary: axes that differ between versions) are exported as dynamic axes and fitted to
the version's own (cut or zero-padded), with every row of a request of another width poisoned.
That is the same on Triton's native onnxruntime backend and on our shims, and the client
refuses any poisoned answer (client/triton_client.py). The graph flags rather than fails: a
failing step inside an ensemble makes Triton 2.51 hang or corrupt concurrent requests
(server_config/shims/runners.py says what was measured).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from export.contract.io_spec import IdRanges, ModelSpec, TensorSpec

# Axis name (a spec's ``fixed_axes``) -> its size in one exported version.
Widths = dict[str, int]


def fixed_dims(tensor: TensorSpec) -> list[tuple[int, str]]:
    """(axis, name) of a tensor's variable dims, the batch axis being 0."""
    names = iter(tensor.dynamic_names)
    return [(i + 1, next(names)) for i, dim in enumerate(tensor.dims) if dim == -1]


def widths_of(spec: ModelSpec, example: Mapping[str, torch.Tensor | np.ndarray]) -> Widths:
    """The sizes of the spec's fixed axes in an example request (the version's own)."""
    widths: Widths = {}
    for tensor in spec.inputs:
        for axis, name in fixed_dims(tensor):
            if name in spec.fixed_axes:
                widths[name] = int(example[tensor.name].shape[axis])
    return widths


class InputGuard(nn.Module):
    """``model`` with its spec's inputs checked row by row: ids in ``[low, high)`` for the
    integer inputs named in ``id_ranges``, finite values for every float input, and each fixed
    axis of the size ``widths`` gives it (see ``widths_of``)."""

    def __init__(
        self, model: nn.Module, spec: ModelSpec, id_ranges: IdRanges, widths: Widths
    ) -> None:
        super().__init__()
        integer = {t.name for t in spec.inputs if t.dtype.startswith("int")}
        if set(id_ranges) != integer:
            raise ValueError(
                f"{spec.name}: id ranges for {sorted(id_ranges)}, integer inputs {sorted(integer)}"
            )
        self.fitted = {
            t.name: [(axis, name) for axis, name in fixed_dims(t) if name in spec.fixed_axes]
            for t in spec.inputs
        }
        needed = {name for axes in self.fitted.values() for _, name in axes}
        if needed != set(widths):
            raise ValueError(
                f"{spec.name}: widths for {sorted(widths)}, fixed axes {sorted(needed)}"
            )
        self.model = model
        self.spec = spec
        self.id_ranges = dict(id_ranges)
        self.widths = dict(widths)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...] | torch.Tensor:
        bad = torch.zeros(inputs[0].shape[0], dtype=torch.bool, device=inputs[0].device)
        safe = []
        for tensor, value in zip(self.spec.inputs, inputs, strict=True):
            for axis, name in self.fitted[tensor.name]:
                value, wrong = _fit(value, axis, self.widths[name])
                bad = bad | wrong
            rows = value.reshape(value.shape[0], -1)
            if tensor.name in self.id_ranges:
                low, high = self.id_ranges[tensor.name]
                bad = bad | ((rows < low) | (rows >= high)).any(dim=1)
                safe.append(value.clamp(low, high - 1))
            else:
                finite = torch.isfinite(value)
                bad = bad | ~finite.reshape(value.shape[0], -1).all(dim=1)
                safe.append(torch.where(finite, value, torch.zeros_like(value)))
        result = self.model(*safe)
        outputs = (result,) if isinstance(result, torch.Tensor) else tuple(result)
        poisoned = tuple(poison(output, bad) for output in outputs)
        return poisoned[0] if isinstance(result, torch.Tensor) else poisoned


def _fit(value: torch.Tensor, axis: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``value`` cut or zero-padded to ``size`` along ``axis``, and whether it had another size.
    Written with tensor ops only (its length as a sum of ones), so both the ONNX exporter and
    the TorchScript tracer keep the axis dynamic instead of baking in the example's size."""
    length = value.new_ones(value.shape[axis], dtype=torch.int64).sum()
    padding = list(value.shape)
    padding[axis] = size
    padded = torch.cat([value, value.new_zeros(padding)], dim=axis)
    return padded.narrow(axis, 0, size), length != size


def poison(output: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """``output`` with the rows flagged in ``bad`` [B] set to NaN (floats) or -1 (ints)."""
    rows = bad.reshape(-1, *([1] * (output.dim() - 1)))
    flag = float("nan") if output.dtype.is_floating_point else -1
    return torch.where(rows, torch.full_like(output, flag), output)
