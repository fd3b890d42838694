"""Publish a trained ASGNet: tokenizer, S-Net, V-Net, G-Net and the similar-incident search as
versions of one number, and the ``asgnet`` and ``log_anomaly`` ensembles.

One number for the five models means a client that reads version N's classes, threshold and
key vocabulary (in G-Net's meta) and index rows (in asgnet_similar's) knows they belong to the
tokenizer and networks of version N. The search is a model of its own (``NearestUnits``), the
labelled units' S-Net embeddings inside it, so it runs on the server in the ensemble; the
PyTorch state a fine-tune on feedback continues from lives in G-Net's folder (``asgnet_state``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from export.asgnet import TrainedAsgnet, Units, snet_outputs
from export.asgnet_state import save_state
from export.contract.io_spec import IdRanges, ModelSpec
from export.contract.specs import (
    ASGNET,
    ASGNET_GNET,
    ASGNET_SIMILAR,
    ASGNET_SNET,
    ASGNET_TOKENIZER,
    ASGNET_VNET,
    LOG_ANOMALY,
)
from export.input_guard import InputGuard, widths_of
from export.log_tokenizer import encode
from export.onnx_export import ParityError, check_parity, export_onnx, parity_summary
from export.publish import publish_tokenizer
from export.repository import retired_versions, versions, write_ensemble, write_version
from export.similar_units import NearestUnits
from export.snet import trim

ASGNET_MODELS = (ASGNET_TOKENIZER, ASGNET_SNET, ASGNET_VNET, ASGNET_GNET, ASGNET_SIMILAR)


def _export(
    module: torch.nn.Module,
    spec: ModelSpec,
    probe: dict[str, np.ndarray],
    folder: Path,
    id_ranges: IdRanges | None = None,
) -> dict:
    path = folder / spec.default_model_filename
    example = {name: torch.from_numpy(array[:2]) for name, array in probe.items()}
    guarded = InputGuard(module, spec, id_ranges or {}, widths_of(spec, probe)).eval()
    export_onnx(guarded, example, path)
    return parity_summary(check_parity(guarded, spec, probe, path))


def similar_index_meta(units: Units, classes: tuple[str, ...]) -> dict[str, Any]:
    """Who each row of the similar-incident index is, as asgnet_similar's meta.json says it."""
    rows = [
        {"unit": name, "label": classes[label], "occurrences": int(weight)}
        for name, label, weight in zip(units.names, units.labels, units.weights, strict=True)
    ]
    return {"units": rows}


def check_similar_rows(path: Path, indexed: np.ndarray, probes: int = 256) -> None:
    """The exported search names, for each probe, rows whose distance (recomputed here) is the
    distance it reports: parity on row ids alone would fail on ties, which come in any order."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    features = indexed[:probes]
    rows, distances = session.run(ASGNET_SIMILAR.output_names, {"FEATURES": features})
    recomputed = ((features[:, None, :] - indexed[rows]) ** 2).sum(axis=2)
    if not np.allclose(recomputed, distances, atol=ASGNET_SIMILAR.atol, rtol=1e-4):
        raise ParityError(f"{ASGNET_SIMILAR.name}: rows and distances disagree")


def publish_asgnet(
    trained: TrainedAsgnet,
    labelled: Units,
    repository: Path,
    training: dict[str, Any] | None = None,
    check: Units | None = None,
    keep: int = 2,
) -> int:
    """Export and check the four models, write them as one version number, index ``labelled``
    (the training units) for similar incidents, keep the PyTorch state with ``check`` (units
    held back from training, what a fine-tune is judged on), and write both ensembles; returns
    the version. ``keep=0`` leaves older versions for the caller to prune once the new one
    serves (see ``write_version``)."""
    # Retired numbers count too (a rolled-back release's number is never reused).
    version = 1 + max(
        max(versions(repository, s.name) + retired_versions(repository, s.name), default=0)
        for s in ASGNET_MODELS
    )
    vocabulary = trained.vocabulary
    all_ids, all_attention = encode(trained.tokenizer, labelled.texts(vocabulary))
    # S-Net's probe: the first 64 texts, cut to their longest (as a batch of them is served).
    ids, attention = (
        t.numpy() for t in trim(*map(torch.from_numpy, (all_ids[:64], all_attention[:64])))
    )
    counts = labelled.counts(vocabulary)
    features, _, _ = snet_outputs(
        trained.snet, torch.from_numpy(all_ids), torch.from_numpy(all_attention)
    )
    with torch.no_grad():
        latent = trained.vnet(torch.from_numpy(counts)).numpy()
    rng = np.random.default_rng(0)
    # The gate's probe spans both sides of the threshold, so both routes are checked.
    gate_probe = {
        "FEATURES": features.numpy()[:256],
        "SNET_CONFIDENCE": rng.uniform(0, 1, (min(256, len(features)), 1)).astype(np.float32),
        "LATENT": latent[:256],
    }

    publish_tokenizer(trained.tokenizer, repository, version, keep)

    def fill_snet(folder: Path, _: int) -> dict[str, Any]:
        tokens = (0, trained.snet.encoder.config.vocab_size)
        parity = _export(
            trained.snet,
            ASGNET_SNET,
            {"INPUT_IDS": ids, "ATTENTION_MASK": attention},
            folder,
            {"INPUT_IDS": tokens, "ATTENTION_MASK": (0, 2)},
        )
        return {"parity": parity, "classes": list(trained.classes)}

    def fill_similar(folder: Path, _: int) -> dict[str, Any]:
        indexed = features.numpy()
        nearest = NearestUnits(indexed).eval()
        parity = _export(nearest, ASGNET_SIMILAR, {"FEATURES": indexed[:256]}, folder)
        check_similar_rows(folder / ASGNET_SIMILAR.default_model_filename, indexed)
        return {"parity": parity, "k": nearest.k, **similar_index_meta(labelled, trained.classes)}

    def fill_vnet(folder: Path, _: int) -> dict[str, Any]:
        parity = _export(trained.vnet, ASGNET_VNET, {"COUNTS": counts[:256]}, folder)
        return {"parity": parity, "vocabulary_fingerprint": vocabulary.fingerprint}

    def fill_gnet(folder: Path, _: int) -> dict[str, Any]:
        save_state(trained, labelled, check if check is not None else Units.empty(), folder)
        return {
            "parity": _export(trained.gnet, ASGNET_GNET, gate_probe, folder),
            "classes": list(trained.classes),
            "threshold": float(trained.gnet.threshold),
            "vocabulary": vocabulary.to_json(),
            "vocabulary_fingerprint": vocabulary.fingerprint,
            "training": {**trained.report, **(training or {})},
        }

    write_version(repository, ASGNET_SNET, fill_snet, keep, version)
    write_version(repository, ASGNET_VNET, fill_vnet, keep, version)
    write_version(repository, ASGNET_GNET, fill_gnet, keep, version)
    write_version(repository, ASGNET_SIMILAR, fill_similar, keep, version)
    write_ensemble(repository, ASGNET)
    write_ensemble(repository, LOG_ANOMALY)
    return version
