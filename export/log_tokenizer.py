"""The S-Net tokenizer: byte-level BPE trained on the log corpus itself (no model hub).

Truncation and padding are saved inside ``tokenizer.json``, so training (here) and serving (the
``asgnet_tokenizer`` Python model, which reads the same file from its version folder) encode a
text identically with one call, ``Tokenizer.encode_batch``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer
from tokenizers.implementations import ByteLevelBPETokenizer
from tokenizers.processors import RobertaProcessing

# RoBERTa's special tokens, in RoBERTa's id order.
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
TOKENIZER_FILE = "tokenizer.json"


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 2000, max_length: int = 256
) -> Tokenizer:
    """Byte-level BPE on the corpus; RoBERTa's <s> ... </s> framing; truncates to max_length
    tokens and pads each batch to its longest text."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIAL_TOKENS)
    )
    tokenizer: Tokenizer = bpe._tokenizer
    tokenizer.post_processor = RobertaProcessing(
        ("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>"))
    )
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("<pad>"), pad_token="<pad>")
    return tokenizer


def encode(tokenizer: Tokenizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(input ids, attention mask), int64 [n, longest] each."""
    encodings = tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    return ids, mask


def save_tokenizer(tokenizer: Tokenizer, folder: Path) -> Path:
    path = folder / TOKENIZER_FILE
    tokenizer.save(str(path))
    return path
