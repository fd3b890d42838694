"""The S-Net tokenizer: trained on log text, served by a self-contained Triton Python model."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from export.contract.units import unit_text
from export.hdfs_data import HDFS_EVENTS
from export.log_tokenizer import SPECIAL_TOKENS, encode, save_tokenizer, train_tokenizer
from export.publish import TOKENIZER_MODEL_SOURCE

TEMPLATES = list(HDFS_EVENTS.values())


@pytest.fixture(scope="module")
def tokenizer():
    texts = [unit_text(TEMPLATES[i : i + 5]) for i in range(len(TEMPLATES))] * 4
    return train_tokenizer(texts, vocab_size=400, max_length=32)


def test_special_tokens_have_robertas_ids(tokenizer):
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]


def test_texts_are_framed_truncated_and_padded_to_the_longest(tokenizer):
    ids, mask = encode(tokenizer, [TEMPLATES[0], unit_text(TEMPLATES)])
    assert ids.shape == mask.shape == (2, 32)  # the long one is truncated to max_length
    assert ids[0, 0] == 0 and 2 in ids[0]  # <s> ... </s>
    assert mask[0].sum() < 32 and (ids[0][mask[0] == 0] == 1).all()  # padded with <pad>
    assert mask[1].all()


@pytest.fixture
def model_file(pb_utils):
    """The tokenizer's model.py, loaded by path as Triton loads it."""
    spec = importlib.util.spec_from_file_location("tokenizer_model", TOKENIZER_MODEL_SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def served(tokenizer, tmp_path, model_file):
    (tmp_path / "1").mkdir()
    save_tokenizer(tokenizer, tmp_path / "1")
    model = model_file.TritonPythonModel()
    model.initialize(
        {
            "model_repository": str(tmp_path),
            "model_version": "1",
            "model_config": '{"output": [{"name": "INPUT_IDS"}, {"name": "ATTENTION_MASK"}]}',
        }
    )
    return model


def _request(*texts: bytes) -> dict:
    return {"TEXT": np.array([[t] for t in texts], dtype=object)}


def test_the_served_model_encodes_as_training_does(served, tokenizer):
    (response,) = served.execute([_request(TEMPLATES[0].encode(), TEMPLATES[3].encode())])
    ids, mask = encode(tokenizer, [TEMPLATES[0], TEMPLATES[3]])
    np.testing.assert_array_equal(response.outputs["INPUT_IDS"], ids)
    np.testing.assert_array_equal(response.outputs["ATTENTION_MASK"], mask)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "TEXT is empty"),
        (b"  \n ", "TEXT is empty"),
        (b"\xff\xfe log", "not valid UTF-8"),
        (b"x" * (2 * 1024 * 1024), "the limit is 1,048,576"),
    ],
)
def test_bad_text_is_flagged_in_band_and_the_other_rows_are_encoded(
    served, model_file, text, message
):
    with pytest.raises(model_file.BadText, match=message):
        model_file.decode_text(text)
    (response,) = served.execute([_request(text, TEMPLATES[1].encode())])
    ids = response.outputs["INPUT_IDS"]
    assert response.error is None and (ids[0] == -1).all()  # outside every vocabulary
    assert (ids[1] >= 0).all() and response.outputs["ATTENTION_MASK"][1].any()


def test_the_model_file_is_self_contained():
    source = Path(TOKENIZER_MODEL_SOURCE).read_text()
    assert "from export" not in source and "from client" not in source
