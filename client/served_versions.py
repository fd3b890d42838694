"""Following the server: a client that lets each request go to the newest ready version reads
each answer with the metadata of the version that answered.

A retrain publishes a version that takes the same inputs (same vocabulary, h, normaliser) with
new weights or bounds, or a key vocabulary grown by new templates (the old keys keep their ids);
that one is taken over without a restart. A version whose inputs mean something else (a new
`train`) cannot judge requests built for the old one: it is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from export.contract.errors import VersionMismatch


class VersionedMeta(Protocol):
    @property
    def version(self) -> int: ...


M = TypeVar("M", bound=VersionedMeta)


class ServedVersions(Generic[M]):
    """The metadata of every version of one model that answered so far, each checked to take
    the inputs of ``bound``, the version the client builds its requests for."""

    def __init__(
        self,
        model: str,
        bound: M,
        load: Callable[[int], M],
        takes: Callable[[M, M], bool],
        inputs_are: str,
    ) -> None:
        """``takes(bound, meta)``: whether a version judges requests built for ``bound``;
        ``inputs_are`` names what it compares in the error (e.g. "vocabulary or h")."""
        self.model, self.bound = model, bound
        self._load, self._takes, self._inputs_are = load, takes, inputs_are
        self._metas = {bound.version: bound}

    @property
    def newest(self) -> M:
        """The newest version that answered so far (``bound`` until another does)."""
        return self._metas[max(self._metas)]

    def meta_of(self, version: int) -> M:
        meta = self._metas.get(version)
        if meta is None:
            meta = self._load(version)
            if not self._takes(self.bound, meta):
                raise VersionMismatch(
                    f"{self.model} v{version} answered, but its {self._inputs_are} differs from "
                    f"v{self.bound.version}'s the stream is read with: restart the client"
                )
            self._metas[version] = meta
        return meta
