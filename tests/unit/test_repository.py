"""The Triton repository: configs from the spec; versions written atomically, with vocabulary."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from export.contract.errors import VersionMismatch
from export.contract.metas import META_FILE, read_meta
from export.contract.specs import ALL_SPECS, ASGNET, DEEPLOG_KEYS, ENSEMBLES, LOG_ANOMALY
from export.contract.vocab import UNKNOWN, KeyVocabulary
from export.repository import (
    ConfigError,
    check_ensemble,
    model_config,
    parse_config,
    versions,
    write_ensemble,
    write_version,
)

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
STANDARD_BACKENDS = {"onnxruntime", "pytorch", "python", "ensemble"}


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name)
def test_committed_configs_are_what_the_spec_writes(spec):
    committed = parse_config((REPOSITORY / spec.name / "config.pbtxt").read_text())
    assert committed == model_config(spec), "re-export to regenerate config.pbtxt from the spec"


def test_every_committed_config_uses_a_standard_triton_backend():
    for path in REPOSITORY.glob("*/config.pbtxt"):
        config = parse_config(path.read_text())
        assert config.backend in STANDARD_BACKENDS or config.platform == "ensemble", path


def test_deeplog_config_batches_dynamically_with_the_spec_tensors():
    config = model_config(DEEPLOG_KEYS)
    assert config.max_batch_size > 0
    assert config.HasField("dynamic_batching")
    assert [t.name for t in config.input] == ["WINDOWS", "NEXT_KEY"]
    assert [t.name for t in config.output] == ["RANK", "TOP_KEYS", "TOP_PROBS"]


def _fill_with(meta: dict):
    def fill(folder: Path, version: int) -> dict:
        (folder / DEEPLOG_KEYS.default_model_filename).write_bytes(b"weights")
        return meta

    return fill


def test_versions_are_numbered_up_and_old_ones_pruned(tmp_path):
    for _ in range(3):
        write_version(tmp_path, DEEPLOG_KEYS, _fill_with({"n": 1}), keep=2)
    assert versions(tmp_path, DEEPLOG_KEYS.name) == [2, 3]
    assert read_meta(tmp_path, DEEPLOG_KEYS.name, 3)["version"] == 3


def test_a_failed_export_leaves_the_repository_as_it_was(tmp_path):
    write_version(tmp_path, DEEPLOG_KEYS, _fill_with({}))

    def broken(folder: Path, version: int) -> dict:
        (folder / "model.onnx").write_bytes(b"half a model")
        raise RuntimeError("parity failed")

    with pytest.raises(RuntimeError, match="parity failed"):
        write_version(tmp_path, DEEPLOG_KEYS, broken)
    assert sorted(p.name for p in (tmp_path / DEEPLOG_KEYS.name).iterdir()) == ["1", "config.pbtxt"]


def test_metadata_copied_to_another_version_is_refused(tmp_path):
    write_version(tmp_path, DEEPLOG_KEYS, _fill_with({}))
    write_version(tmp_path, DEEPLOG_KEYS, _fill_with({}))
    folder = tmp_path / DEEPLOG_KEYS.name
    (folder / "2" / META_FILE).write_text((folder / "1" / META_FILE).read_text())
    with pytest.raises(VersionMismatch, match="v1, not deeplog_keys v2"):
        read_meta(tmp_path, DEEPLOG_KEYS.name, 2)


def test_a_vocabulary_maps_unseen_keys_to_unknown_and_has_a_content_fingerprint():
    vocab = KeyVocabulary(names=("E5", "E22"), templates=("Receiving <*>", "Served <*>"))
    assert vocab.key_of_name("E5") == 3
    assert vocab.key_of_name("E99") == UNKNOWN
    assert vocab.name(UNKNOWN) == "<unknown>"
    other = KeyVocabulary(names=("E5", "E22"), templates=("Receiving <*>", "Deleting <*>"))
    assert vocab.fingerprint != other.fingerprint
    assert KeyVocabulary.from_json(json.loads(json.dumps(vocab.to_json()))) == vocab


@pytest.mark.parametrize("spec", ENSEMBLES, ids=lambda s: s.name)
def test_ensembles_wire_real_tensors_of_real_models(spec):
    check_ensemble(spec, {s.name: s for s in ALL_SPECS})
    config = model_config(spec)
    assert config.platform == "ensemble" and not config.backend
    assert [s.model_name for s in config.ensemble_scheduling.step] == [s.model for s in spec.steps]


def test_an_ensemble_reading_a_tensor_nobody_wrote_is_refused():
    broken = replace(ASGNET, steps=ASGNET.steps[1:])  # S-Net without the tokenizer before it
    with pytest.raises(ConfigError, match="input_ids"):
        check_ensemble(broken, {s.name: s for s in ALL_SPECS})


def test_an_ensemble_gets_the_empty_version_folder_triton_requires(tmp_path):
    folder = write_ensemble(tmp_path, LOG_ANOMALY)
    assert folder == tmp_path / "log_anomaly" / "1" and folder.is_dir()
    assert parse_config((tmp_path / "log_anomaly" / "config.pbtxt").read_text()).max_batch_size == 0


def test_models_published_together_can_share_a_version_number(tmp_path):
    write_version(tmp_path, DEEPLOG_KEYS, _fill_with({}))
    assert write_version(tmp_path, DEEPLOG_KEYS, _fill_with({}), version=5) == 5
    with pytest.raises(ValueError, match="not newer"):
        write_version(tmp_path, DEEPLOG_KEYS, _fill_with({}), version=5)
