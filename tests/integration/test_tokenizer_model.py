"""The asgnet_tokenizer Python model served by the real Triton server."""

import numpy as np
import pytest

from client.triton_client import InferenceError
from export.hdfs_data import HDFS_EVENTS
from export.log_tokenizer import encode, train_tokenizer, unit_text
from export.publish import publish_tokenizer
from export.specs import ASGNET_TOKENIZER

TEMPLATES = list(HDFS_EVENTS.values())


@pytest.fixture(scope="module")
def tokenizer_version(repository, triton):
    tokenizer = train_tokenizer([unit_text(TEMPLATES)] * 10, vocab_size=400, max_length=64)
    version = publish_tokenizer(tokenizer, repository)
    triton.load_model(ASGNET_TOKENIZER.name)
    return tokenizer, version


def _infer(triton, version, *texts: bytes):
    return triton.infer(
        ASGNET_TOKENIZER.name,
        {"TEXT": np.array([[t] for t in texts], dtype=object)},
        ASGNET_TOKENIZER.output_names,
        version=version,
    )


def test_text_is_tokenized_in_the_server_as_in_training(triton, tokenizer_version):
    tokenizer, version = tokenizer_version
    texts = [unit_text(TEMPLATES[:3]), TEMPLATES[5]]
    answer = _infer(triton, version, *(t.encode() for t in texts))
    ids, mask = encode(tokenizer, texts)
    np.testing.assert_array_equal(answer.outputs["INPUT_IDS"], ids)
    np.testing.assert_array_equal(answer.outputs["ATTENTION_MASK"], mask)


@pytest.mark.parametrize(
    ("text", "message"),
    [(b"", "TEXT is empty"), (b"\xc3\x28", "not valid UTF-8"), (b"y" * 1_500_000, "the limit")],
)
def test_bad_text_is_a_clear_error_from_the_server(triton, tokenizer_version, text, message):
    _, version = tokenizer_version
    with pytest.raises(InferenceError, match=message):
        _infer(triton, version, text)
