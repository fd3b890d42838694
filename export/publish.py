"""Publish a trained key model as the next version in a Triton repository, with its metadata.

The numbers the model was trained with (h, g, the end marker, the key vocabulary) are written
into the version folder they belong to, so a client reads them from the version that answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.deeplog_keys import KeyLSTM, KeyModelConfig, KeyModelServing
from export.onnx_export import check_parity, export_onnx
from export.repository import read_meta, write_version
from export.specs import DEEPLOG_KEYS
from export.vocab import KeyVocabulary


@dataclass(frozen=True)
class KeyModelMeta:
    """What a client needs to talk to one version of deeplog_keys."""

    version: int
    window: int
    top_g: int
    end_marker: bool
    vocabulary: KeyVocabulary

    @classmethod
    def load(cls, repository: Path, version: int) -> KeyModelMeta:
        meta = read_meta(repository, DEEPLOG_KEYS.name, version)
        return cls(
            version=version,
            window=meta["window"],
            top_g=meta["top_g"],
            end_marker=meta["end_marker"],
            vocabulary=KeyVocabulary.from_json(meta["vocabulary"]),
        )


def publish_key_model(
    model: KeyLSTM,
    config: KeyModelConfig,
    top_g: int,
    vocabulary: KeyVocabulary,
    repository: Path,
    probe_windows: np.ndarray,
    probe_next: np.ndarray,
    training: dict[str, Any],
) -> int:
    """Export to ONNX, check parity on the probe windows, write the version; returns it."""
    serving = KeyModelServing(model, top_g).eval()
    probe = {"WINDOWS": probe_windows.astype(np.int64), "NEXT_KEY": probe_next.reshape(-1, 1)}

    def fill(folder: Path, version: int) -> dict[str, Any]:
        path = folder / DEEPLOG_KEYS.default_model_filename
        example = {name: torch.from_numpy(array[:2]) for name, array in probe.items()}
        export_onnx(serving, DEEPLOG_KEYS, example, path)
        parity = check_parity(serving, DEEPLOG_KEYS, probe, path)
        return {
            "window": config.window,
            "top_g": top_g,
            "end_marker": config.end_marker,
            "vocabulary": vocabulary.to_json(),
            "vocabulary_fingerprint": vocabulary.fingerprint,
            "parity": {p.name: [p.max_abs_diff, p.mismatch_fraction] for p in parity},
            "training": training,
        }

    return write_version(repository, DEEPLOG_KEYS, fill)
