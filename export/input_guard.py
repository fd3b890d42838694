"""Input checks inside the exported graph, so every server that runs it flags bad input.

An embedding indexes its table with whatever id it is given: ONNX's Gather wraps negative ids
(key -1 is answered as the last key) and fails on ids past the table with an internal error;
NaN or inf propagates into answers that look like answers (or into finite ones, through an
LSTM's saturating gates). ``InputGuard`` wraps a model for export: a row holding an id outside
its range or a non-finite float is run on harmless values (ids clamped, floats zeroed) and its
answers are poisoned, NaN in float outputs and -1 in integer ones, which no valid answer holds.
That is the same on Triton's native onnxruntime backend and on our shims, and the client
refuses any poisoned answer (client/triton_client.py). The graph flags rather than fails: a
failing step inside an ensemble makes Triton 2.51 hang or corrupt concurrent requests
(server_config/shims/runners.py says what was measured).
"""

from __future__ import annotations

import torch
from torch import nn

from export.contract.io_spec import IdRanges, ModelSpec


class InputGuard(nn.Module):
    """``model`` with its spec's inputs checked row by row: ids in ``[low, high)`` for the
    integer inputs named in ``id_ranges``, finite values for every float input."""

    def __init__(self, model: nn.Module, spec: ModelSpec, id_ranges: IdRanges) -> None:
        super().__init__()
        integer = {t.name for t in spec.inputs if t.dtype.startswith("int")}
        if set(id_ranges) != integer:
            raise ValueError(
                f"{spec.name}: id ranges for {sorted(id_ranges)}, integer inputs {sorted(integer)}"
            )
        self.model = model
        self.spec = spec
        self.id_ranges = dict(id_ranges)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...] | torch.Tensor:
        bad = torch.zeros(inputs[0].shape[0], dtype=torch.bool, device=inputs[0].device)
        safe = []
        for tensor, value in zip(self.spec.inputs, inputs, strict=True):
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
        poisoned = tuple(_poison(output, bad) for output in outputs)
        return poisoned[0] if isinstance(result, torch.Tensor) else poisoned


def _poison(output: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    rows = bad.reshape(-1, *([1] * (output.dim() - 1)))
    flag = float("nan") if output.dtype.is_floating_point else -1
    return torch.where(rows, torch.full_like(output, flag), output)
