"""What a client needs of one model version, as the version's ``meta.json`` states it.

The numbers a model was trained with (h, g, the key vocabulary, the parameter bounds and
normaliser, ASGNet's classes) travel with the version. The exporter writes them into the
version folder; the server hands them out through the ``model_meta`` model (see
``export/triton_models/model_meta.py``), so the client reads them over gRPC with ``from_json``
and never from the repository's files. ``load`` is for the operations side (retrain), which
works on the repository itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.contract.errors import VersionMismatch
from export.contract.specs import ASGNET_GNET, ASGNET_SIMILAR, DEEPLOG_KEYS, DEEPLOG_STEPS
from export.contract.vocab import KeyVocabulary
from export.contract.workflow import Workflow

META_FILE = "meta.json"


def read_meta(repository: Path, model: str, version: int) -> dict[str, Any]:
    """The metadata written with one version; checks it really belongs to that version."""
    path = repository / model / str(version) / META_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: version {version} of {model} has no metadata")
    meta = json.loads(path.read_text())
    if meta.get("model") != model or meta.get("version") != version:
        raise VersionMismatch(
            f"{path} describes {meta.get('model')} v{meta.get('version')}, not {model} v{version}"
        )
    return meta


@dataclass(frozen=True)
class Normaliser:
    """Per-key, per-dimension mean and standard deviation from training data: [keys, width]."""

    mean: np.ndarray
    std: np.ndarray

    def apply(self, key: int, vectors: np.ndarray) -> np.ndarray:
        d = vectors.shape[-1]
        return (vectors - self.mean[key, :d]) / self.std[key, :d]

    def invert(self, key: int, vectors: np.ndarray) -> np.ndarray:
        d = vectors.shape[-1]
        return vectors * self.std[key, :d] + self.mean[key, :d]


@dataclass(frozen=True)
class KeyModelMeta:
    """What a client needs to talk to one version of deeplog_keys."""

    version: int
    window: int
    top_g: int
    end_marker: bool
    vocabulary: KeyVocabulary
    workflow: Workflow | None = None  # its tasks' workflows (None: published before them)

    @classmethod
    def load(cls, repository: Path, version: int) -> KeyModelMeta:
        return cls.from_json(version, read_meta(repository, DEEPLOG_KEYS.name, version))

    @classmethod
    def from_json(cls, version: int, meta: dict[str, Any]) -> KeyModelMeta:
        return cls(
            version=version,
            window=meta["window"],
            top_g=meta["top_g"],
            end_marker=meta["end_marker"],
            vocabulary=KeyVocabulary.from_json(meta["vocabulary"]),
            workflow=Workflow.from_json(meta["workflow"]) if "workflow" in meta else None,
        )


@dataclass(frozen=True)
class StepModelMeta:
    """What a client needs to talk to one version of deeplog_steps: no window (the state
    carries the whole prefix), the width of that state instead."""

    version: int
    top_g: int
    end_marker: bool
    state_width: int  # floats of one session's carried state
    vocabulary: KeyVocabulary

    @classmethod
    def load(cls, repository: Path, version: int) -> StepModelMeta:
        return cls.from_json(version, read_meta(repository, DEEPLOG_STEPS.name, version))

    @classmethod
    def from_json(cls, version: int, meta: dict[str, Any]) -> StepModelMeta:
        return cls(
            version=version,
            top_g=meta["top_g"],
            end_marker=meta["end_marker"],
            state_width=meta["state_width"],
            vocabulary=KeyVocabulary.from_json(meta["vocabulary"]),
        )


@dataclass(frozen=True)
class ParamModelMeta:
    """What a client needs to talk to one version of a parameter-value model."""

    model: str
    version: int
    window: int
    width: int
    confidence: float
    thresholds: dict[int, list[float]]  # key -> per-dimension bound on |error|, normalised
    # Bounds above the prediction, where feedback widened them apart from the ones below
    # (training sets one bound for both sides; recalibration widens only the side it saw).
    thresholds_above: dict[int, list[float]]
    normaliser: Normaliser
    schema: dict[str, Any]  # the client's ParamSchema, as JSON
    vocabulary: KeyVocabulary

    @classmethod
    def load(cls, repository: Path, model: str, version: int) -> ParamModelMeta:
        return cls.from_json(model, version, read_meta(repository, model, version))

    @classmethod
    def from_json(cls, model: str, version: int, meta: dict[str, Any]) -> ParamModelMeta:
        return cls(
            model=model,
            version=version,
            window=meta["window"],
            width=meta["width"],
            confidence=meta["confidence"],
            thresholds={int(k): v for k, v in meta["thresholds"].items()},
            thresholds_above={
                int(k): v for k, v in meta.get("thresholds_above", meta["thresholds"]).items()
            },
            normaliser=Normaliser(
                np.asarray(meta["normaliser"]["mean"], np.float32),
                np.asarray(meta["normaliser"]["std"], np.float32),
            ),
            schema=meta["schema"],
            vocabulary=KeyVocabulary.from_json(meta["vocabulary"]),
        )


@dataclass(frozen=True)
class IndexedUnit:
    """One row of a version's similar-incident index: a labelled training unit."""

    unit: str
    label: str
    occurrences: int  # how many identical training rows it stands for


@dataclass(frozen=True)
class AsgnetMeta:
    """What a client needs to build requests for, and read answers of, one ASGNet version."""

    version: int
    classes: tuple[str, ...]
    threshold: float
    vocabulary: KeyVocabulary  # the count vector's key ids (V-Net's input width)

    # The rows of asgnet_similar's index: SIMILAR_UNITS answers are row ids. Its version is
    # the release's, except while a release is being swapped in model by model.
    indexed: tuple[IndexedUnit, ...]
    indexed_version: int

    @classmethod
    def load(cls, repository: Path, version: int) -> AsgnetMeta:
        return cls.from_json(
            version,
            read_meta(repository, ASGNET_GNET.name, version),
            read_meta(repository, ASGNET_SIMILAR.name, version),
        )

    @classmethod
    def from_json(cls, version: int, gnet: dict[str, Any], similar: dict[str, Any]) -> AsgnetMeta:
        return cls(
            version=version,
            classes=tuple(gnet["classes"]),
            threshold=gnet["threshold"],
            vocabulary=KeyVocabulary.from_json(gnet["vocabulary"]),
            indexed=tuple(IndexedUnit(**row) for row in similar["units"]),
            indexed_version=similar["version"],
        )
