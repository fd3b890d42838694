"""Python-based Triton backends that run standard ONNX / TorchScript model folders.

On NVIDIA's container the native ``onnxruntime`` and ``pytorch`` backends serve the same folders.
"""
