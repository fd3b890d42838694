"""Python-based `pytorch` backend: serves standard TorchScript model folders on embedded Triton."""

import stub_path  # noqa: F401  (first: makes the project and its venv importable)

from server_config.shims.adapter import ShimModel
from server_config.shims.runners import TorchScriptRunner


class TritonPythonModel(ShimModel):
    default_filename = "model.pt"
    make_runner = TorchScriptRunner
