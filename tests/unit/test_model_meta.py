"""The ``model_meta`` Triton model: a version's meta.json over gRPC, and nothing else."""

import importlib.util
import json

import numpy as np
import pytest

from export.contract.metas import META_FILE
from export.contract.specs import MODEL_META
from export.repository import META_MODEL_SOURCE, model_config, parse_config, write_meta_model


@pytest.fixture
def served(tmp_path, pb_utils):
    repository = tmp_path / "repo"
    folder = write_meta_model(repository).parent
    (repository / "deeplog_keys" / "3").mkdir(parents=True)
    meta = {"model": "deeplog_keys", "version": 3, "window": 10}
    (repository / "deeplog_keys" / "3" / META_FILE).write_text(json.dumps(meta))
    (tmp_path / "secret.json").write_text('{"model": "x", "version": 1}')
    spec = importlib.util.spec_from_file_location("model_meta", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_repository": str(folder.parent), "model_version": "1"})
    return model


def _ask(model: str, version: int) -> dict:
    return {
        "MODEL": np.array([model.encode()], dtype=object),
        "VERSION": np.array([version], dtype=np.int64),
    }


def test_a_version_s_meta_json_is_answered_as_written(served):
    (answer,) = served.execute([_ask("deeplog_keys", 3)])
    assert answer.error is None
    assert json.loads(answer.outputs["META"][0]) == {
        "model": "deeplog_keys",
        "version": 3,
        "window": 10,
    }


@pytest.mark.parametrize(
    ("model", "version", "message"),
    [
        ("deeplog_keys", 4, "deeplog_keys v4 has no metadata"),
        ("deeplog_keys", 0, "VERSION must be a version number"),
        ("..", 1, "is not a model name"),
        ("../secret.json", 1, "is not a model name"),
        ("/etc", 1, "is not a model name"),
    ],
)
def test_anything_else_is_a_clear_error_and_reads_nothing_outside_the_repository(
    served, model, version, message
):
    bad, good = served.execute([_ask(model, version), _ask("deeplog_keys", 3)])
    assert message in bad.error
    assert good.error is None


def test_the_meta_model_is_written_once_with_a_config_triton_accepts(tmp_path):
    first = write_meta_model(tmp_path)
    stamp = first.stat().st_mtime_ns
    assert write_meta_model(tmp_path).stat().st_mtime_ns == stamp  # unchanged: left alone
    assert first.read_bytes() == META_MODEL_SOURCE.read_bytes()
    config = (tmp_path / MODEL_META.name / "config.pbtxt").read_text()
    assert parse_config(config) == model_config(MODEL_META)
