"""Python-based `onnxruntime` backend: serves standard ONNX model folders on the embedded Triton."""

import stub_path  # noqa: F401  (first: makes the project and its venv importable)

from server_config.shims.adapter import ShimModel
from server_config.shims.runners import OnnxRunner


class TritonPythonModel(ShimModel):
    default_filename = "model.onnx"
    make_runner = OnnxRunner
