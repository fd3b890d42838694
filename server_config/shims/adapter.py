"""The one place that talks to Triton's ``pb_utils``: turns requests into numpy and back."""

from __future__ import annotations

from collections.abc import Callable

import triton_python_backend_utils as pb_utils

from server_config.shims.runners import (
    InvalidInput,
    Runner,
    ShimConfig,
    run_batched,
    shim_config,
)


class ShimModel:
    """Base of the shims' ``TritonPythonModel``: subclasses name a runner and a file name."""

    default_filename = ""
    make_runner: Callable[[ShimConfig], Runner]

    def initialize(self, args: dict[str, str]) -> None:
        self.config = shim_config(args, self.default_filename)
        self.runner = type(self).make_runner(self.config)

    def execute(self, requests: list) -> list:
        arrays = []
        for request in requests:
            tensors = {}
            for t in self.config.inputs:
                tensor = pb_utils.get_input_tensor_by_name(request, t.name)
                tensors[t.name] = None if tensor is None else tensor.as_numpy()
            arrays.append(tensors)
        responses = []
        for answer in run_batched(self.runner, self.config, arrays):
            if isinstance(answer, Exception):
                # Bad input is the caller's to fix (INVALID_ARGUMENT); anything else is ours.
                code = (
                    pb_utils.TritonError.INVALID_ARG
                    if isinstance(answer, InvalidInput)
                    else pb_utils.TritonError.INTERNAL
                )
                responses.append(
                    pb_utils.InferenceResponse(error=pb_utils.TritonError(str(answer), code))
                )
            else:
                outputs = [pb_utils.Tensor(name, value) for name, value in answer.items()]
                responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses

    def finalize(self) -> None:
        self.runner = None
