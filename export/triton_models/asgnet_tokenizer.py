"""Triton Python model ``asgnet_tokenizer``: unit text (BYTES) in, token ids and mask out.

Copied into each version folder as ``model.py`` beside the ``tokenizer.json`` it serves, and
self-contained (numpy, tokenizers and Triton's pb_utils only), so NVIDIA's container serves the
same folder. Text it cannot encode (not UTF-8, empty, over the limit) is flagged in-band, not
refused: its row's ids are -1, which S-Net's graph answers with NaN, so no verdict is made of
it. A refusal would fail a step of the ``asgnet``/``log_anomaly`` ensembles, and Triton 2.51's
ensemble scheduler, when a step fails while sibling steps still run, hangs or corrupts other
requests' inputs (measured here under 32 concurrent requests).
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


UNJUDGED = -1  # the ids of a text that cannot be encoded: outside every vocabulary


def _decoded_or_none(raw: object) -> str | None:
    try:
        return decode_text(raw)
    except BadText:
        return None


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
            decoded = [_decoded_or_none(t) for t in texts]
            good = [text for text in decoded if text is not None]
            encodings = iter(self.tokenizer.encode_batch(good) if good else [])
            rows = [next(encodings) if text is not None else None for text in decoded]
            width = max((len(e.ids) for e in rows if e is not None), default=1)
            ids = np.full((len(rows), width), UNJUDGED, dtype=np.int64)
            mask = np.ones((len(rows), width), dtype=np.int64)
            for i, encoding in enumerate(rows):
                if encoding is not None:
                    ids[i], mask[i] = encoding.ids, encoding.attention_mask
            tensors = [
                pb_utils.Tensor(self.outputs[0], ids),
                pb_utils.Tensor(self.outputs[1], mask),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self) -> None:
        self.tokenizer = None
