"""Model definitions, training, ONNX export and the Triton repository writer.

Trains on parsed data (key sequences), never on raw logs: it does not import ``client``.
"""
