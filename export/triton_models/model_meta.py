"""Triton Python model ``model_meta``: a model name and version in, that version's meta.json out.

What a client needs of a version (h, g, the key vocabulary, parameter bounds, ASGNet's classes
and index rows) lives in the version's folder. This model hands it out over gRPC, so a client
on another host needs only the server's address. Self-contained (json, numpy and Triton's
pb_utils only), so NVIDIA's container serves the same folder. It reads files of its own
repository only: a name must be a plain folder name and a version a positive number.
"""

import contextlib
import json
import re
from pathlib import Path

# The embedded server's path bootstrap (server_config/backends/stub_path.py); absent on NVIDIA's
# container, where numpy is installed normally.
with contextlib.suppress(ImportError):
    import stub_path  # noqa: F401

import numpy as np
import triton_python_backend_utils as pb_utils

META_FILE = "meta.json"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
CACHED = 256  # versions; a version number is never reused, so its meta never changes


class UnknownVersion(ValueError):
    pass


def meta_text(repository: Path, model: str, version: int) -> str:
    """The meta.json of ``model`` version ``version`` in ``repository``, checked to be it."""
    if not _NAME.match(model) or ".." in model:
        raise UnknownVersion(f"MODEL {model!r} is not a model name")
    if version < 1:
        raise UnknownVersion(f"VERSION must be a version number (1 or more), not {version}")
    path = repository / model / str(version) / META_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UnknownVersion(f"{model} v{version} has no metadata in the repository") from None
    meta = json.loads(text)
    if meta.get("model") != model or meta.get("version") != version:
        raise UnknownVersion(f"{path.name} of {model}/{version} describes another version")
    return text


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        # model_repository is this model's own folder; the others are beside it.
        self.repository = Path(args["model_repository"]).parent
        self.cache: dict[tuple[str, int], bytes] = {}

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            model = pb_utils.get_input_tensor_by_name(request, "MODEL").as_numpy().reshape(-1)
            version = pb_utils.get_input_tensor_by_name(request, "VERSION").as_numpy().reshape(-1)
            try:
                text = self._meta(bytes(model[0]).decode("utf-8"), int(version[0]))
            except (UnknownVersion, UnicodeDecodeError, ValueError) as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            out = pb_utils.Tensor("META", np.array([text], dtype=object))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses

    def _meta(self, model: str, version: int) -> bytes:
        key = (model, version)
        if key not in self.cache:
            if len(self.cache) >= CACHED:
                self.cache.pop(next(iter(self.cache)))
            self.cache[key] = meta_text(self.repository, model, version).encode("utf-8")
        return self.cache[key]

    def finalize(self) -> None:
        self.cache = {}
