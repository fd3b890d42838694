"""The one wrapper around tritonclient's gRPC client.

An outage is retried with backoff for up to ``RetryPolicy.retry_for_s`` and, if it lasts
longer, raised as ServerUnavailable: a request is never silently dropped. A restarted server
answers "unknown model" or "not ready" until it has loaded its models again; for a model this
client has been answered by before, that is part of the outage and retried too. Other server
errors (bad input, unknown model) are raised at once as InferenceError.

Everything the client needs of a model version comes from the server: ``version_meta`` asks
the ``model_meta`` model for the version's meta.json, so the client needs only the address.
Which versions are ready comes from model metadata and readiness (open to every client); the
repository API (load, unload) may be restricted to operators: ``ClientSecurity`` carries the
admin key it asks for, and the TLS files of a server that speaks TLS.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from client.replicas import Replica, Replicas
from client.shared_memory import SharedMemory
from export.contract.errors import VersionMismatch
from export.contract.specs import MODEL_META

RETRYABLE = {
    "StatusCode.UNAVAILABLE",
    "StatusCode.DEADLINE_EXCEEDED",
    "StatusCode.RESOURCE_EXHAUSTED",
}
# What a server that is (re)starting says of a model it has not loaded yet.
NOT_LOADED = ("unknown model", "is not ready", "is not found", "failed to find model")


# Triton asks for a restricted protocol's key in this gRPC header: its prefix, then the header
# name the server was started with (server_config/launcher.py: ADMIN_KEY_HEADER).
ADMIN_KEY_HEADER = "admin-key"
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"
RESTRICTED_MESSAGE = "protocol is restricted"


class ServerUnavailable(RuntimeError):
    """The server did not answer within the retry budget."""


class InferenceError(RuntimeError):
    """The server answered with an error that retrying will not fix."""


class UnjudgedInput(InferenceError):
    """The model flagged rows it could not judge (NaN where a float answer belongs: an id
    outside its vocabulary, a NaN or infinity in the input); no verdict is made of them."""


class Restricted(InferenceError):
    """The server keeps this call (loading, unloading models) to holders of its admin key."""


class NotServed(RuntimeError):
    """The server has no ready version of a model the client needs."""


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff from ``first_delay_s``, doubling up to ``max_delay_s``, for ``retry_for_s`` in
    all. The default outlasts a full restart of the embedded server here (about 10 s to serve
    every model again) with a wide margin."""

    retry_for_s: float = 60.0
    first_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def delays(self) -> list[float]:
        delays, total = [], 0.0
        while total < self.retry_for_s:
            delay = min(self.first_delay_s * 2 ** len(delays), self.max_delay_s)
            delay = min(delay, self.retry_for_s - total)
            delays.append(delay)
            total += delay
        return delays


@dataclass(frozen=True)
class ClientSecurity:
    """How to reach a server that speaks TLS (``ca``: the PEM that signed its certificate;
    ``cert``/``key``: this client's, where the server asks for one) and the admin key its
    repository API asks for. The default: plain gRPC, no key (a loopback server)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    admin_key: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs its key (--tls-cert with --tls-key)")
        if self.cert is not None and self.ca is None:
            raise ValueError("a client certificate is for a TLS server: give --tls-ca too")
        for path in (self.ca, self.cert, self.key):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{path}: no such file")

    def grpc_options(self) -> dict[str, Any]:
        if self.ca is None:  # plain gRPC
            return {}
        return {
            "ssl": True,
            "root_certificates": str(self.ca),
            "private_key": None if self.key is None else str(self.key),
            "certificate_chain": None if self.cert is None else str(self.cert),
        }

    def admin_headers(self) -> dict[str, str] | None:
        if self.admin_key is None:
            return None
        return {GRPC_HEADER_PREFIX + ADMIN_KEY_HEADER: self.admin_key}


@dataclass(frozen=True)
class InferResult:
    outputs: dict[str, np.ndarray]
    model_version: str


class TritonClient:
    """A client of one Triton server or of several replicas of it (``client/replicas.py``).

    ``observe(model, seconds)``, where given, is told how long each answered request took
    (the client's request-latency metric). Requests and reads go to one replica at a time,
    failing over to the next on an outage; loading and unloading go to every replica, so they
    all serve the same versions, and ``ready_versions`` names what every one of them has ready.
    """

    def __init__(
        self,
        url: str,
        retry: RetryPolicy | None = None,
        timeout_s: float = 60.0,
        observe: Callable[[str, float], None] | None = None,
        security: ClientSecurity | None = None,
        shared_memory: bool = False,
    ) -> None:
        """``shared_memory``: requests that state their outputs' sizes go through system
        shared memory (``client/shared_memory.py``): only for a server on this host."""
        self.url = url
        self.shared = SharedMemory() if shared_memory else None
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self.observe = observe
        self.security = security or ClientSecurity()
        options = self.security.grpc_options()
        self.replicas = Replicas(
            url, lambda address: grpcclient.InferenceServerClient(url=address, **options)
        )
        self.retries = 0  # how many times a call was retried, for reporting
        self._answered: set[str] = set()  # models that answered: "not loaded" means restarting

    def _call(self, what: str, fn: Callable[[Any], Any], model: str | None = None):
        """``fn(grpc_client)`` on one replica; on an outage at once on the next, and when
        none answers, again after a backoff delay, until the retry budget is spent."""

        def one_round() -> tuple[bool, Any]:
            outage = None
            for turn, replica in enumerate(self.replicas.rotation()):
                try:
                    return True, fn(replica.client)
                except InferenceServerException as exc:
                    self._refuse(what, exc, replica.client, model)
                    self.replicas.set_aside(replica)
                    self.replicas.failovers += turn == 0
                    outage = exc
            return False, outage

        return self._rounds(f"{what}: Triton at {self.url}", one_round)

    def _call_each(self, what: str, fn: Callable[[Any], Any]) -> None:
        """``fn(grpc_client)`` on every replica in turn, each retried through its own outage;
        the first that refuses (or stays unreachable) stops it, named in the error."""
        for replica in self.replicas.all():
            where = f"{what} on {replica.address}"

            def one_round(replica: Replica = replica, where: str = where) -> tuple[bool, Any]:
                try:
                    return True, fn(replica.client)
                except InferenceServerException as exc:
                    self._refuse(where, exc, replica.client, None)
                    return False, exc

            self._rounds(where, one_round)

    def _rounds(self, what: str, one_round: Callable[[], tuple[bool, Any]]) -> Any:
        """``one_round()`` (a pass over replicas: (True, result), or (False, the outage))
        until it answers, with backoff between rounds and the DNS name resolved again."""
        started = time.monotonic()
        last = None
        for delay in [*self.retry.delays(), None]:
            answered, last = one_round()
            if answered:
                return last
            if delay is not None:
                self.retries += 1
                time.sleep(delay)
                self.replicas.refresh(force=True)
        raise ServerUnavailable(
            f"{what} unavailable for {time.monotonic() - started:.0f} s "
            f"(--retry-for {self.retry.retry_for_s:g}): {last}"
        )

    def _refuse(
        self, what: str, exc: InferenceServerException, client: Any, model: str | None
    ) -> None:
        """Raise what retrying will not fix; return for an outage."""
        if RESTRICTED_MESSAGE in (exc.message() or ""):
            raise Restricted(
                f"{what}: the server keeps this to its operators; give the admin key "
                "(--admin-key-file)"
                + (" (the one given was refused)" if self.security.admin_key else "")
            ) from exc
        if not self._retryable(exc, client, model):
            raise InferenceError(f"{what}: {exc.message()}") from exc

    def _retryable(self, exc: InferenceServerException, client: Any, model: str | None) -> bool:
        if str(exc.status()) in RETRYABLE:
            return True
        message = (exc.message() or "").lower()
        if model not in self._answered or not any(text in message for text in NOT_LOADED):
            return False
        # A model that answered before is unknown now: a restarted server that has not loaded
        # it yet (wait for it), unless the server serves it and the request named a version
        # it does not have (an error of the caller's).
        try:
            return not client.is_model_ready(model)
        except InferenceServerException:
            return True

    def is_ready(self) -> bool:
        """Whether some replica is ready to serve."""
        for replica in self.replicas.all():
            try:
                if replica.client.is_server_ready():
                    return True
            except InferenceServerException:
                continue
        return False

    def load_model(self, model: str, config: str | None = None) -> None:
        """Load (or reload) ``model`` on every replica; ``config`` (JSON) overrides its
        config.pbtxt for this load, e.g. to serve only some of its versions."""
        headers = self.security.admin_headers()
        self._call_each(
            f"load {model}", lambda c: c.load_model(model, headers=headers, config=config)
        )

    def unload_model(self, model: str) -> None:
        headers = self.security.admin_headers()
        self._call_each(f"unload {model}", lambda c: c.unload_model(model, headers=headers))

    def ready_versions(self, model: str) -> list[int]:
        """Versions of ``model`` every replica has loaded and ready, ascending."""
        return self.ready_versions_of([model])[model]

    def ready_versions_of(self, models: Sequence[str]) -> dict[str, list[int]]:
        """Each model's versions ready on every replica, ascending."""
        each = self.ready_versions_each(models)
        return {
            model: sorted(set.intersection(*(set(r[model]) for r in each.values()))) if each else []
            for model in models
        }

    def ready_versions_each(self, models: Sequence[str]) -> dict[str, dict[str, list[int]]]:
        """Replica address -> model -> its ready versions, ascending, of every replica that
        answers (one that is down is left out while another answers: it serves nothing)."""

        def one_round() -> tuple[bool, Any]:
            found, outage = {}, None
            for replica in self.replicas.all():
                try:
                    found[replica.address] = {m: _ready_versions(replica.client, m) for m in models}
                except InferenceServerException as exc:
                    self._refuse(f"readiness on {replica.address}", exc, replica.client, None)
                    self.replicas.set_aside(replica)
                    outage = exc
            return (True, found) if found else (False, outage)

        return self._rounds(f"readiness: Triton at {self.url}", one_round)

    def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        version: int | None = None,
        output_bytes: Mapping[str, int] | None = None,
    ) -> InferResult:
        """One request; ``version`` pins it, so the answer comes from that version or not at all.
        ``output_bytes`` (each output's size in bytes): with ``shared_memory``, the tensors
        go through shared memory instead of the gRPC messages."""
        shared = self.shared if output_bytes is not None else None
        started = time.perf_counter()
        with shared.lock if shared is not None else nullcontext():
            if shared is not None:
                tensors, requested = shared.request(inputs, output_bytes or {})
            else:
                tensors = _tensors(inputs)
                requested = [grpcclient.InferRequestedOutput(name) for name in outputs]

            def send(client: Any) -> Any:
                if shared is not None:
                    shared.register(client)
                return client.infer(
                    model,
                    tensors,
                    model_version="" if version is None else str(version),
                    outputs=requested,
                    client_timeout=self.timeout_s,
                )

            result = self._call(f"infer {model}", send, model=model)
            arrays = (
                shared.read(result, outputs)
                if shared is not None
                else {n: result.as_numpy(n) for n in outputs}
            )
        self._answered.add(model)
        if self.observe is not None:
            self.observe(model, time.perf_counter() - started)
        answered = result.get_response().model_version
        if version is not None and answered != str(version):
            raise VersionMismatch(f"asked {model} v{version}, answered by v{answered}")
        _refuse_unjudged(model, arrays)
        return InferResult(arrays, answered)

    def start_infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        on_done: Callable[[str | None], None],
    ) -> None:
        """Send one request (to the next replica in turn) and return at once; ``on_done`` gets
        None or the error, on a gRPC thread. Never retried: the load test counts failures
        instead of hiding them."""

        def answered(result: object, error: InferenceServerException | None) -> None:
            on_done(None if error is None else f"{error.status()}: {error.message()}")

        self.replicas.rotation()[0].client.async_infer(
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
        output_bytes: Callable[[int], Mapping[str, int]] | None = None,
    ) -> list[InferResult]:
        """Rows of ``inputs`` in requests of up to ``max_batch`` rows each, in row order;
        ``version`` pins them all, None lets each go to the newest ready version.
        ``output_bytes(rows)``: the outputs' sizes for a request of that many rows (see
        ``infer``)."""
        total = len(next(iter(inputs.values())))
        parts = []
        for i in range(0, total, max_batch):
            part = {name: np.ascontiguousarray(a[i : i + max_batch]) for name, a in inputs.items()}
            rows = len(next(iter(part.values())))
            sizes = output_bytes(rows) if output_bytes is not None else None
            parts.append(self.infer(model, part, outputs, version, sizes))
        return parts

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

    def version_meta(self, model: str, version: int) -> dict[str, Any]:
        """The meta.json of one version of ``model``, from the server (``model_meta``)."""
        inputs = {
            "MODEL": np.array([model.encode("utf-8")], dtype=object),
            "VERSION": np.array([version], dtype=np.int64),
        }
        out = self.infer(MODEL_META.name, inputs, MODEL_META.output_names).outputs["META"]
        return json.loads(bytes(out.reshape(-1)[0]).decode("utf-8"))

    def bind_version(self, model: str, version: int | None = None, load: bool = True) -> int:
        """Ask the server to load ``model`` (unless ``load`` is False, or the server keeps that
        to its operators), then return ``version`` if it is ready, or the newest ready version
        when none is named."""
        if load:
            try:
                self.load_model(model)
                self.load_model(MODEL_META.name)  # how the caller reads the version's metadata
            except Restricted:
                pass  # its operators load the models; use what the server serves
        ready = self.ready_versions(model)
        if not ready:
            raise NotServed(f"{model} has no ready version on {self.url}")
        chosen = ready[-1] if version is None else version
        if chosen not in ready:
            raise VersionMismatch(f"{model} v{chosen} is not ready (ready: {ready})")
        return chosen

    def close(self) -> None:
        if self.shared is not None:
            self.shared.close()
        self.replicas.close()

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ready_versions(client: Any, model: str) -> list[int]:
    """One server's ready versions of ``model``, ascending. Metadata names the versions it
    has; readiness confirms each (both open to any client, unlike the repository index). An
    unknown model has none."""
    try:
        meta = client.get_model_metadata(model)
    except InferenceServerException as exc:
        if str(exc.status()) in RETRYABLE:
            raise
        return []
    return sorted(int(v) for v in meta.versions if client.is_model_ready(model, v))


def _refuse_unjudged(model: str, outputs: Mapping[str, np.ndarray]) -> None:
    """Every served graph answers a row it cannot judge with NaN in its float outputs
    (export/input_guard.py); such an answer is an error, never a verdict."""
    for name, array in outputs.items():
        if array.dtype.kind == "f" and array.size and not np.isfinite(array).all():
            rows = np.unique(np.argwhere(~np.isfinite(array))[:, 0])
            shown = ", ".join(str(r) for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
            raise UnjudgedInput(
                f"{model}: {name} is NaN in {len(rows)} row(s) ({shown}): the model could not "
                "judge that input (an id outside its vocabulary, or a NaN or infinity)"
            )


def _tensors(inputs: Mapping[str, np.ndarray]) -> list[grpcclient.InferInput]:
    tensors = []
    for name, array in inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors
