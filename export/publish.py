"""Publish a trained key model as the next version in a Triton repository, with its metadata.

The numbers the model was trained with (h, g, the end marker, the key vocabulary) are written
into the version folder they belong to, so a client reads them from the version that answers.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from export.contract.io_spec import ModelSpec
from export.contract.metas import KeyModelMeta, read_meta
from export.contract.specs import ASGNET_TOKENIZER, DEEPLOG_KEYS, DEEPLOG_STEPS, PARAM_FORMATS
from export.contract.vocab import KeyVocabulary
from export.contract.windows import windows_of_sessions
from export.deeplog_keys import KeyLSTM, KeyModelConfig, KeyModelServing, next_key_probabilities
from export.deeplog_params import ParamModelConfig, TrainedParamModel
from export.deeplog_steps import (
    StepLSTM,
    StepModelConfig,
    StepModelServing,
    padded_sessions,
    wire_sequence_lengths,
)
from export.input_guard import InputGuard, widths_of
from export.log_tokenizer import save_tokenizer
from export.onnx_export import (
    Capture,
    check_parity,
    check_torchscript_parity,
    export_onnx,
    export_torchscript,
    parity_summary,
)
from export.repository import write_version
from export.workflow import build_workflow

WEIGHTS_FILE = "weights.pt"  # PyTorch state dict: what a retrain continues from
REPLAY_FILE = "replay.npz"  # normal training windows, replayed by the online update
CHECK_NORMAL_FILE = "check_normal.json"  # normal sessions a retrain must not start flagging
REPLAY_WINDOWS = 100_000  # all of HDFS's 79,821 training windows; a sample beyond that
CHECK_SESSIONS = 2_000
# The normal sessions a version's workflow is built of, kept so that a retrain builds its
# workflow from them and the fed-back ones (not from those alone); a sample beyond this many.
WORKFLOW_SESSIONS = 20_000
WORKFLOW_FILE = "workflow_sessions.json"


@dataclass(frozen=True)
class RetrainData:
    """What a version keeps so that a later retrain can continue from it."""

    replay_windows: np.ndarray  # [n, h] normal windows replayed by the online update
    replay_keys: np.ndarray  # [n]
    check_normal: list[list[int]]  # normal sessions a retrain must not start flagging
    check_source: str
    # The normal sessions the version's workflow is built of (all of training's, held out
    # included, up to WORKFLOW_SESSIONS; a retrain adds the fed-back ones).
    workflow_sessions: list[list[int]] = field(default_factory=list)

    def with_normal(self, sessions: list[list[int]], seed: int = 0) -> list[list[int]]:
        """The workflow's sessions with ``sessions`` added: up to WORKFLOW_SESSIONS in all,
        the new ones first (a sample of them if they alone are more), then a sample of the
        old ones."""
        rng = np.random.default_rng(seed)
        new = _sample([[int(k) for k in s] for s in sessions], WORKFLOW_SESSIONS, rng)
        return _sample(self.workflow_sessions, WORKFLOW_SESSIONS - len(new), rng) + new

    @classmethod
    def from_training(
        cls,
        trained_on: list[list[int]],
        held_out: list[list[int]],
        config: KeyModelConfig,
    ) -> RetrainData:
        """A sample of the training windows; the held-out calibration sessions as the check
        set, or a sample of the training sessions when g was fixed and nothing was held out."""
        rng = np.random.default_rng(config.seed)
        windows, keys = windows_of_sessions(trained_on, config.window, config.end_marker)
        if len(windows) == 0:
            raise ValueError("no training windows to probe and replay")
        sample = rng.choice(len(windows), size=min(REPLAY_WINDOWS, len(windows)), replace=False)
        if held_out:
            check, source = held_out, "held out of training (calibration of g)"
        else:
            picked = rng.choice(len(trained_on), min(CHECK_SESSIONS, len(trained_on)), False)
            check = [trained_on[i] for i in picked]
            source = "a sample of the training sessions (g was fixed, nothing held out)"
        check = [[int(k) for k in s] for s in check[:CHECK_SESSIONS]]
        data = cls(windows[sample], keys[sample], check, source)
        return replace(data, workflow_sessions=data.with_normal(trained_on + held_out, config.seed))


def publish_key_model(
    model: KeyLSTM,
    config: KeyModelConfig,
    top_g: int,
    vocabulary: KeyVocabulary,
    repository: Path,
    retrain: RetrainData,
    training: dict[str, Any],
    keep: int = 2,
) -> int:
    """Export to ONNX, check parity on replay windows, write the version; returns it.

    Beside the ONNX file the version keeps what a later retrain needs: the weights, the replay
    windows, the check sessions and the sessions its workflow is built of. Its metadata carries
    the workflow of its tasks, built from ``retrain.workflow_sessions`` with this model's
    probabilities.
    """
    replay_windows, replay_keys = retrain.replay_windows, retrain.replay_keys
    check_normal = retrain.check_normal
    keys = (0, vocabulary.size)
    probe = {"WINDOWS": replay_windows[:2048], "NEXT_KEY": replay_keys[:2048].reshape(-1, 1)}
    serving = InputGuard(
        KeyModelServing(model, top_g),
        DEEPLOG_KEYS,
        {"WINDOWS": keys, "NEXT_KEY": keys},
        widths_of(DEEPLOG_KEYS, probe),
    ).eval()
    sessions = retrain.workflow_sessions
    probabilities = next_key_probabilities(model, sessions, config.window, config.end_marker)
    workflow = build_workflow(sessions, probabilities)

    def fill(folder: Path, version: int) -> dict[str, Any]:
        path = folder / DEEPLOG_KEYS.default_model_filename
        example = {name: torch.from_numpy(array[:2]) for name, array in probe.items()}
        export_onnx(serving, example, path)
        parity = check_parity(serving, DEEPLOG_KEYS, probe, path)
        torch.save(model.state_dict(), folder / WEIGHTS_FILE)
        np.savez_compressed(folder / REPLAY_FILE, windows=replay_windows, next_keys=replay_keys)
        (folder / CHECK_NORMAL_FILE).write_text(json.dumps(check_normal))
        (folder / WORKFLOW_FILE).write_text(json.dumps(sessions))
        return {
            "window": config.window,
            "top_g": top_g,
            "end_marker": config.end_marker,
            "vocabulary": vocabulary.to_json(),
            "vocabulary_fingerprint": vocabulary.fingerprint,
            "model_config": asdict(config),
            "check_normal": {"sessions": len(check_normal), "source": retrain.check_source},
            "parity": parity_summary(parity),
            "training": training,
            "workflow": workflow.to_json(),
        }

    return write_version(repository, DEEPLOG_KEYS, fill, keep=keep)


def step_probe(
    sessions: list[list[int]], state_width: int, rng: np.random.Generator, rows: int = 512
) -> dict[str, np.ndarray]:
    """Requests to check an exported step model on: stretches of real sessions, cut at random
    points, of random lengths, read from random states (the state a stretch starts from is
    anything a session could have reached)."""
    picked = [sessions[i] for i in rng.choice(len(sessions), min(rows, len(sessions)))]
    inputs, targets = padded_sessions(picked)
    keys = np.concatenate([inputs, np.maximum(targets[:, -1:], 0)], axis=1)
    lengths = np.array([[rng.integers(2, len(s) + 3)] for s in picked], dtype=np.int64)
    state = rng.normal(0, 0.5, (len(picked), state_width)).astype(np.float32)
    return {"KEYS": keys, "LENGTHS": lengths, "STATE": state}


def publish_step_model(
    model: StepLSTM,
    config: StepModelConfig,
    top_g: int,
    vocabulary: KeyVocabulary,
    repository: Path,
    sessions: list[list[int]],
    training: dict[str, Any],
    keep: int = 2,
) -> int:
    """Export the step model to ONNX with its rows' lengths wired into the LSTM nodes, check
    parity against PyTorch on stretches of ``sessions``, write the version; returns it."""
    rng = np.random.default_rng(config.seed)
    probe = step_probe(sessions, config.state_width(), rng)
    stepping = StepModelServing(model, top_g)
    serving = InputGuard(
        stepping,
        DEEPLOG_STEPS,
        # Lengths above the row's width are the serving module's to refuse.
        {"KEYS": (0, vocabulary.size), "LENGTHS": (2, 2**31)},
        widths_of(DEEPLOG_STEPS, probe),
    ).eval()

    def fill(folder: Path, version: int) -> dict[str, Any]:
        path = folder / DEEPLOG_STEPS.default_model_filename
        example = {name: torch.from_numpy(array[:2]) for name, array in probe.items()}
        stepping.exporting = True
        try:
            export_onnx(serving, example, path, Capture.TRACE)
        finally:
            stepping.exporting = False
        wire_sequence_lengths(str(path))
        # Against the eager model with its lengths (packed): what the wired graph must compute.
        parity = check_parity(serving, DEEPLOG_STEPS, probe, path)
        torch.save(model.state_dict(), folder / WEIGHTS_FILE)
        return {
            "top_g": top_g,
            "end_marker": True,
            "state_width": config.state_width(),
            "vocabulary": vocabulary.to_json(),
            "vocabulary_fingerprint": vocabulary.fingerprint,
            "model_config": asdict(config),
            "parity": parity_summary(parity),
            "training": training,
        }

    return write_version(repository, DEEPLOG_STEPS, fill, keep=keep)


def _sample(sessions: list[list[int]], n: int, rng: np.random.Generator) -> list[list[int]]:
    """``n`` of ``sessions`` at most, in their order."""
    if len(sessions) <= n:
        return sessions
    return [sessions[i] for i in sorted(rng.choice(len(sessions), n, replace=False))]


@dataclass(frozen=True)
class KeyVersion:
    """A published key model as a retrain continues from it."""

    meta: KeyModelMeta
    config: KeyModelConfig
    model: KeyLSTM
    retrain: RetrainData

    @classmethod
    def load(cls, repository: Path, version: int) -> KeyVersion:
        raw = read_meta(repository, DEEPLOG_KEYS.name, version)
        meta = KeyModelMeta.from_json(version, raw)
        folder = repository / DEEPLOG_KEYS.name / str(version)
        if not (folder / WEIGHTS_FILE).exists() or "model_config" not in raw:
            raise FileNotFoundError(
                f"{folder} has no {WEIGHTS_FILE}: it was published before retraining existed; "
                "train a new version first"
            )
        config = KeyModelConfig(**raw["model_config"])
        model = KeyLSTM(meta.vocabulary.size, config)
        model.load_state_dict(torch.load(folder / WEIGHTS_FILE, weights_only=True))
        model.eval()
        with np.load(folder / REPLAY_FILE) as replay:
            windows, keys = replay["windows"], replay["next_keys"]
        check = json.loads((folder / CHECK_NORMAL_FILE).read_text())
        source = raw["check_normal"]["source"]
        # A version published before workflows kept their sessions: its check sessions
        # stand in (what its workflow, if any, was partly built of).
        kept = folder / WORKFLOW_FILE
        workflow = json.loads(kept.read_text()) if kept.is_file() else check
        return cls(meta, config, model, RetrainData(windows, keys, check, source, workflow))


def publish_param_model(
    trained: TrainedParamModel,
    config: ParamModelConfig,
    vocabulary: KeyVocabulary,
    schema: dict[str, Any],
    repository: Path,
    export_format: str = "onnx",
    training: dict[str, Any] | None = None,
) -> int:
    """Export as ONNX or TorchScript, check parity against PyTorch, write the next version."""
    if export_format not in PARAM_FORMATS:
        raise ValueError(f"--format must be one of {sorted(PARAM_FORMATS)}, not {export_format!r}")
    spec = PARAM_FORMATS[export_format]
    width = trained.model.head.out_features
    rng = np.random.default_rng(config.seed)
    keys = sorted(trained.dims)
    probe = {
        "HISTORY": rng.normal(0, 1, (256, config.window, width)).astype(np.float32),
        "KEY": rng.choice(keys, (256, 1)).astype(np.int64),
    }
    guarded = InputGuard(
        trained.model,
        spec,
        {"KEY": (0, trained.model.embed.num_embeddings)},
        widths_of(spec, probe),
    ).eval()

    def fill(folder: Path, version: int) -> dict[str, Any]:
        path = folder / spec.default_model_filename
        example = {name: torch.from_numpy(array[:2]) for name, array in probe.items()}
        if export_format == "onnx":
            export_onnx(guarded, example, path)
            parity = check_parity(guarded, spec, probe, path)
        else:
            export_torchscript(guarded, example, path)
            parity = check_torchscript_parity(guarded, spec, probe, path)
        return {
            "format": export_format,
            "window": config.window,
            "width": width,
            "confidence": config.confidence,
            "thresholds": {str(k): v for k, v in trained.thresholds.items()},
            "normaliser": {
                "mean": trained.normaliser.mean.tolist(),
                "std": trained.normaliser.std.tolist(),
            },
            "schema": schema,
            "vocabulary": vocabulary.to_json(),
            "vocabulary_fingerprint": vocabulary.fingerprint,
            "parity": parity_summary(parity),
            "training": {**asdict(trained.report), **(training or {})},
        }

    return write_version(repository, spec, fill)


def publish_recalibrated_params(
    repository: Path,
    spec: ModelSpec,
    serving: int,
    bounds: tuple[dict[int, list[float]], dict[int, list[float]]],
    training: dict[str, Any],
) -> int:
    """The next version of a parameter-value model: the serving version's exported file, byte
    for byte (its parity check stands), with new bounds. Pruned by the caller once it serves."""
    source = repository / spec.name / str(serving)
    old = read_meta(repository, spec.name, serving)

    def fill(folder: Path, version: int) -> dict[str, Any]:
        shutil.copy2(source / spec.default_model_filename, folder / spec.default_model_filename)
        meta = {k: v for k, v in old.items() if k not in ("model", "version")}
        below, above = bounds
        meta["thresholds"] = {str(k): v for k, v in below.items()}
        meta["thresholds_above"] = {str(k): v for k, v in above.items()}
        meta["training"] = {**training, "weights_of": serving}
        return meta

    return write_version(repository, spec, fill, keep=0)


TOKENIZER_MODEL_SOURCE = Path(__file__).parent / "triton_models" / "asgnet_tokenizer.py"


def publish_tokenizer(
    tokenizer: Tokenizer, repository: Path, version: int | None = None, keep: int = 2
) -> int:
    """The tokenizer as a Triton Python model: its model.py and tokenizer.json in one version."""

    def fill(folder: Path, version: int) -> dict[str, Any]:
        shutil.copyfile(TOKENIZER_MODEL_SOURCE, folder / ASGNET_TOKENIZER.default_model_filename)
        save_tokenizer(tokenizer, folder)
        return {
            "vocab_size": tokenizer.get_vocab_size(),
            "max_length": tokenizer.truncation["max_length"] if tokenizer.truncation else None,
        }

    return write_version(repository, ASGNET_TOKENIZER, fill, keep, version)
