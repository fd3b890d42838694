"""Requests through Triton's system shared memory, where client and server share a host.

Over plain gRPC every tensor is copied into the request message and out of the answer (for
the stepwise key model, 1 KB of LSTM state per session in and out). With system shared
memory the client writes the tensors into a POSIX shared-memory region that it has
registered with the server, the server reads them there and writes the outputs into a second
region; gRPC carries only names, shapes and offsets. A server on another host cannot map the
regions: registering them fails with the server's error, so this is for a client beside its
server (``detect --shared-memory``), gRPC alone the default across hosts.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Mapping, Sequence
from functools import cache
from itertools import count
from types import ModuleType
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

_ids = count()
ALIGN = 64  # bytes: each tensor starts on a cache line


@cache
def _shm() -> ModuleType:
    """tritonclient's shared-memory module, imported when first used: it finds its C library
    through pkg_resources, which warns on import (a warning for tritonclient, not our users)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        import tritonclient.utils.shared_memory as shm
    return shm


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class _Region:
    """One shared-memory region, recreated larger when a request needs more."""

    def __init__(self, role: str) -> None:
        self.name = f"logad_{os.getpid()}_{next(_ids)}_{role}"
        self.size = 0
        self.handle: Any = None

    def fit(self, needed: int) -> bool:
        """Make the region hold ``needed`` bytes; True if it was (re)created."""
        if needed <= self.size:
            return False
        self.destroy()
        self.size = max(needed, 2 * self.size, 1 << 20)
        self.handle = _shm().create_shared_memory_region(self.name, f"/{self.name}", self.size)
        return True

    def destroy(self) -> None:
        if self.handle is not None:
            _shm().destroy_shared_memory_region(self.handle)
            self.handle = None


class SharedMemory:
    """This client's input and output regions, registered with each server it sends to.

    ``request`` writes the inputs into the input region and returns the tensors and
    requested outputs that point into the regions; ``read`` copies the outputs out. One
    request at a time uses the regions (``lock``)."""

    def __init__(self) -> None:
        self.inputs = _Region("in")
        self.outputs = _Region("out")
        self.lock = threading.Lock()
        self._registered: dict[int, tuple[int, int]] = {}  # id(server client) -> sizes
        self._clients: dict[int, Any] = {}
        self._placed: dict[str, tuple[int, int]] = {}  # output name -> (offset, bytes)

    def request(
        self,
        inputs: Mapping[str, np.ndarray],
        output_bytes: Mapping[str, int],
    ) -> tuple[list[grpcclient.InferInput], list[grpcclient.InferRequestedOutput]]:
        arrays = {name: np.ascontiguousarray(a) for name, a in inputs.items()}
        offsets, total = {}, 0
        for name, a in arrays.items():
            offsets[name] = total
            total += _aligned(a.nbytes)
        self.inputs.fit(total)
        tensors = []
        for name, a in arrays.items():
            _shm().set_shared_memory_region(self.inputs.handle, [a], offset=offsets[name])
            tensor = grpcclient.InferInput(name, list(a.shape), np_to_triton_dtype(a.dtype))
            tensor.set_shared_memory(self.inputs.name, a.nbytes, offset=offsets[name])
            tensors.append(tensor)
        self._placed, total = {}, 0
        for name, size in output_bytes.items():
            self._placed[name] = (total, size)
            total += _aligned(size)
        self.outputs.fit(total)
        requested = []
        for name, (offset, size) in self._placed.items():
            output = grpcclient.InferRequestedOutput(name)
            output.set_shared_memory(self.outputs.name, size, offset=offset)
            requested.append(output)
        return tensors, requested

    def register(self, client: Any) -> None:
        """Register the regions, at their current sizes, with the server ``client`` talks to
        (again after they grew)."""
        sizes = (self.inputs.size, self.outputs.size)
        if self._registered.get(id(client)) == sizes:
            return
        if id(client) in self._registered:
            client.unregister_system_shared_memory(self.inputs.name)
            client.unregister_system_shared_memory(self.outputs.name)
        client.register_system_shared_memory(self.inputs.name, f"/{self.inputs.name}", sizes[0])
        client.register_system_shared_memory(self.outputs.name, f"/{self.outputs.name}", sizes[1])
        self._registered[id(client)] = sizes
        self._clients[id(client)] = client

    def read(self, result: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The named outputs of ``result``, copied out of the output region."""
        found = {}
        for name in names:
            meta = result.get_output(name)
            offset, _ = self._placed[name]
            dtype = triton_to_np_dtype(meta.datatype)
            found[name] = (
                _shm()
                .get_contents_as_numpy(self.outputs.handle, dtype, list(meta.shape), offset=offset)
                .copy()
            )
        return found

    def close(self) -> None:
        """Unregister from every server (one that is gone is left as it is) and free the
        regions."""
        for client in self._clients.values():
            try:
                client.unregister_system_shared_memory(self.inputs.name)
                client.unregister_system_shared_memory(self.outputs.name)
            except InferenceServerException:
                pass  # a server that is gone has nothing to free
        self._clients, self._registered = {}, {}
        self.inputs.destroy()
        self.outputs.destroy()
