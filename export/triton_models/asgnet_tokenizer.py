"""Triton Python model ``asgnet_tokenizer``: unit text (BYTES) in, token ids and mask out.

Copied into each version folder as ``model.py`` beside the ``tokenizer.json`` it serves, and
self-contained (numpy, tokenizers and Triton's pb_utils only), so NVIDIA's container serves the
same folder. Bad text gets a clear per-request error; the other requests in a batch still run.
"""

import contextlib
import json
from pathlib import Path

# The embedded server's path bootstrap (server_config/backends/stub_path.py); absent on NVIDIA's
# container, where tokenizers is installed normally.
with contextlib.suppress(ImportError):
    import stub_path  # noqa: F401

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

MAX_TEXT_BYTES = 1024 * 1024  # a unit's text longer than this is refused, not truncated


class BadText(ValueError):
    pass


def decode_text(raw: object) -> str:
    """One TEXT element: UTF-8 bytes, not empty, at most MAX_TEXT_BYTES."""
    if not isinstance(raw, bytes | bytearray):
        raise BadText(f"TEXT must be bytes, got {type(raw).__name__}")
    if len(raw) > MAX_TEXT_BYTES:
        raise BadText(f"TEXT is {len(raw):,} bytes; the limit is {MAX_TEXT_BYTES:,}")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadText(f"TEXT is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise BadText("TEXT is empty")
    return text


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        folder = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.pad = self.tokenizer.padding["pad_id"] if self.tokenizer.padding else 0
        self.outputs = [o["name"] for o in json.loads(args["model_config"])["output"]]

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            texts = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            try:
                decoded = [decode_text(t) for t in texts]
            except BadText as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
                continue
            encodings = self.tokenizer.encode_batch(decoded)
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            tensors = [
                pb_utils.Tensor(self.outputs[0], ids),
                pb_utils.Tensor(self.outputs[1], mask),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self) -> None:
        self.tokenizer = None
