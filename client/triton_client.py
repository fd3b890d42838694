"""The one wrapper around tritonclient's gRPC client.

An outage is retried with backoff and, if it outlasts the retry budget, raised as
ServerUnavailable: a request is never silently dropped. Other server errors (bad input, unknown
model) are raised at once as InferenceError.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from export.repository import VersionMismatch

RETRYABLE = {
    "StatusCode.UNAVAILABLE",
    "StatusCode.DEADLINE_EXCEEDED",
    "StatusCode.RESOURCE_EXHAUSTED",
}


class ServerUnavailable(RuntimeError):
    """The server did not answer within the retry budget."""


class InferenceError(RuntimeError):
    """The server answered with an error that retrying will not fix."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    first_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def delays(self) -> list[float]:
        return [min(self.first_delay_s * 2**i, self.max_delay_s) for i in range(self.attempts - 1)]


@dataclass(frozen=True)
class InferResult:
    outputs: dict[str, np.ndarray]
    model_version: str


class TritonClient:
    def __init__(self, url: str, retry: RetryPolicy | None = None, timeout_s: float = 60.0) -> None:
        self.url = url
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self._client = grpcclient.InferenceServerClient(url=url)
        self.retries = 0  # how many times a call was retried, for reporting

    def _call(self, what: str, fn, *args, **kwargs):
        last: Exception | None = None
        for delay in [*self.retry.delays(), None]:
            try:
                return fn(*args, **kwargs)
            except InferenceServerException as exc:
                if str(exc.status()) not in RETRYABLE:
                    raise InferenceError(f"{what}: {exc.message()}") from exc
                last = exc
            if delay is not None:
                self.retries += 1
                time.sleep(delay)
        raise ServerUnavailable(
            f"{what}: Triton at {self.url} unavailable after {self.retry.attempts} attempts: {last}"
        )

    def is_ready(self) -> bool:
        try:
            return self._client.is_server_ready()
        except InferenceServerException:
            return False

    def load_model(self, model: str) -> None:
        self._call(f"load {model}", self._client.load_model, model)

    def unload_model(self, model: str) -> None:
        self._call(f"unload {model}", self._client.unload_model, model)

    def ready_versions(self, model: str) -> list[int]:
        """Versions of ``model`` the server has loaded and ready, ascending."""
        return self.ready_versions_of([model])[model]

    def ready_versions_of(self, models: Sequence[str]) -> dict[str, list[int]]:
        """Each model's ready versions, ascending, from one look at the repository index."""
        index = self._call("repository index", self._client.get_model_repository_index)
        ready: dict[str, list[int]] = {model: [] for model in models}
        for m in index.models:
            if m.name in ready and m.state == "READY" and m.version:
                ready[m.name].append(int(m.version))
        return {model: sorted(versions) for model, versions in ready.items()}

    def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        version: int | None = None,
    ) -> InferResult:
        """One request; ``version`` pins it, so the answer comes from that version or not at all."""
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
        result = self._call(
            f"infer {model}",
            self._client.infer,
            model,
            _tensors(inputs),
            model_version="" if version is None else str(version),
            outputs=requested,
            client_timeout=self.timeout_s,
        )
        answered = result.get_response().model_version
        if version is not None and answered != str(version):
            raise VersionMismatch(f"asked {model} v{version}, answered by v{answered}")
        return InferResult({n: result.as_numpy(n) for n in outputs}, answered)

    def start_infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        on_done: Callable[[str | None], None],
    ) -> None:
        """Send one request and return at once; ``on_done`` gets None or the error, on a gRPC
        thread. Never retried: the load test counts failures instead of hiding them."""

        def answered(result: object, error: InferenceServerException | None) -> None:
            on_done(None if error is None else f"{error.status()}: {error.message()}")

        self._client.async_infer(
            model,
            _tensors(inputs),
            callback=answered,
            outputs=[grpcclient.InferRequestedOutput(name) for name in outputs],
            client_timeout=self.timeout_s,
        )

    def infer_parts(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        version: int | None,
        max_batch: int,
    ) -> list[InferResult]:
        """Rows of ``inputs`` in requests of up to ``max_batch`` rows each, in row order;
        ``version`` pins them all, None lets each go to the newest ready version."""
        rows = len(next(iter(inputs.values())))
        return [
            self.infer(
                model,
                {name: np.ascontiguousarray(a[i : i + max_batch]) for name, a in inputs.items()},
                outputs,
                version=version,
            )
            for i in range(0, rows, max_batch)
        ]

    def infer_in_batches(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        version: int,
        max_batch: int,
    ) -> dict[str, np.ndarray]:
        """Rows of ``inputs`` (at least one) in requests pinned to ``version``; each output
        concatenated back in row order."""
        parts = self.infer_parts(model, inputs, outputs, version, max_batch)
        return {name: np.concatenate([p.outputs[name] for p in parts]) for name in outputs}

    def bind_version(self, model: str, version: int | None = None, load: bool = True) -> int:
        """Ask the server to load ``model`` (unless ``load`` is False), then return ``version``
        if it is ready, or the newest ready version when none is named."""
        if load:
            self.load_model(model)
        ready = self.ready_versions(model)
        if not ready:
            raise RuntimeError(f"{model} has no ready version on {self.url}")
        chosen = ready[-1] if version is None else version
        if chosen not in ready:
            raise VersionMismatch(f"{model} v{chosen} is not ready (ready: {ready})")
        return chosen

    def close(self) -> None:
        self._client.close()


def _tensors(inputs: Mapping[str, np.ndarray]) -> list[grpcclient.InferInput]:
    tensors = []
    for name, array in inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors
