"""ASGNet's S-Net: a RoBERTa encoder over a unit's log text, projected into an information
space where a semantic head classifies and says how confident it is.

No model hub: the encoder is a small RoBERTa built from a ``RobertaConfig`` and pre-trained by
masked language modelling on the log corpus itself, or loaded from a local checkpoint folder the
user names; both go through ``RobertaForMaskedLM``, so the code path is the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import RobertaConfig, RobertaForMaskedLM, RobertaModel

from export.fitting import fit
from export.log_tokenizer import SPECIAL_TOKENS, TOKENIZER_FILE

PAD, MASK = SPECIAL_TOKENS.index("<pad>"), SPECIAL_TOKENS.index("<mask>")


@dataclass(frozen=True)
class SNetConfig:
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    intermediate: int = 256
    max_length: int = 256  # tokens per unit text, <s> and </s> included
    info_dim: int = 64  # the information space the gate works in
    mlm_probability: float = 0.15
    mlm_epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 5e-4
    seed: int = 0


def new_encoder(vocab_size: int, config: SNetConfig) -> RobertaForMaskedLM:
    """A small RoBERTa, randomly initialised, sized for the log tokenizer."""
    roberta = RobertaConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        intermediate_size=config.intermediate,
        max_position_embeddings=config.max_length + 2,  # RoBERTa offsets positions by pad + 1
        pad_token_id=PAD,
        bos_token_id=SPECIAL_TOKENS.index("<s>"),
        eos_token_id=SPECIAL_TOKENS.index("</s>"),
    )
    torch.manual_seed(config.seed)
    return RobertaForMaskedLM(roberta)


def _load_encoder(folder: Path) -> RobertaForMaskedLM:
    """A local checkpoint folder (``save_pretrained`` output); never a hub download."""
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder} is not a RoBERTa checkpoint folder (no config.json)")
    return RobertaForMaskedLM.from_pretrained(str(folder), local_files_only=True)


def load_checkpoint(folder: Path, max_length: int) -> tuple[RobertaForMaskedLM, Tokenizer]:
    """A local checkpoint and the tokenizer it was trained with (``tokenizer.json`` beside its
    weights): a checkpoint's embeddings mean nothing under another tokenizer's ids."""
    encoder = _load_encoder(folder)
    if not (folder / TOKENIZER_FILE).exists():
        raise FileNotFoundError(
            f"{folder} has no {TOKENIZER_FILE}: a checkpoint must come with its tokenizer"
        )
    tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    config = encoder.config
    problems = []
    if tokenizer.get_vocab_size() > config.vocab_size:
        problems.append(
            f"tokenizer has {tokenizer.get_vocab_size()} tokens, embeddings {config.vocab_size}"
        )
    if tokenizer.token_to_id("<pad>") != config.pad_token_id:
        problems.append(f"<pad> is {tokenizer.token_to_id('<pad>')}, model {config.pad_token_id}")
    if max_length + 2 > config.max_position_embeddings:
        problems.append(
            f"max_length {max_length} needs {max_length + 2} positions, "
            f"model has {config.max_position_embeddings}"
        )
    if problems:
        raise ValueError(f"{folder}: checkpoint and tokenizer do not fit: {'; '.join(problems)}")
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=config.pad_token_id, pad_token="<pad>")
    return encoder, tokenizer


def mask_tokens(
    ids: torch.Tensor, attention: torch.Tensor, probability: float, vocab_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: of the chosen ordinary tokens, 80% -> <mask>, 10% random, 10% kept.
    Returns (inputs, labels) with label -100 where nothing is predicted."""
    ordinary = (ids >= len(SPECIAL_TOKENS)) & (attention == 1)
    chosen = (torch.rand(ids.shape) < probability) & ordinary
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    inputs = ids.clone()
    roll = torch.rand(ids.shape)
    inputs[chosen & (roll < 0.8)] = MASK
    randomised = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[randomised] = torch.randint(len(SPECIAL_TOKENS), vocab_size, ids.shape)[randomised]
    return inputs, labels


def trim(ids: torch.Tensor, attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the padding columns beyond the batch's longest text (attention cost is quadratic)."""
    longest = int(attention.sum(dim=1).max()) if len(attention) else 0
    return ids[:, : max(longest, 1)], attention[:, : max(longest, 1)]


@dataclass(frozen=True)
class PretrainReport:
    texts: int
    epochs: int
    final_loss: float
    seconds: float


def pretrain_mlm(
    encoder: RobertaForMaskedLM,
    ids: np.ndarray,
    attention: np.ndarray,
    config: SNetConfig,
    progress: bool = True,
) -> PretrainReport:
    """Masked language modelling on the corpus' unit texts (token ids from the log tokenizer)."""
    torch.manual_seed(config.seed)
    x, a = torch.from_numpy(ids), torch.from_numpy(attention)
    vocab = encoder.config.vocab_size

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        ids_b, mask_b = trim(x[idx], a[idx])
        inputs, labels = mask_tokens(ids_b, mask_b, config.mlm_probability, vocab)
        return encoder(input_ids=inputs, attention_mask=mask_b, labels=labels).loss

    start = time.perf_counter()
    loss = fit(
        encoder,
        batch_loss,
        len(x),
        config.mlm_epochs,
        config.batch_size,
        config.learning_rate,
        np.random.default_rng(config.seed),
        "pre-train s-net (MLM)",
        progress,
    )
    return PretrainReport(len(x), config.mlm_epochs, loss, time.perf_counter() - start)


class SNet(nn.Module):
    """(token ids, attention mask) -> (features in the information space, class probabilities,
    confidence = the largest probability)."""

    def __init__(self, encoder: RobertaModel, config: SNetConfig, classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.project = nn.Sequential(
            nn.Linear(encoder.config.hidden_size, config.info_dim), nn.Tanh()
        )
        self.head = nn.Linear(config.info_dim, classes)

    def features(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=ids, attention_mask=attention).last_hidden_state
        return self.project(hidden[:, 0])  # the <s> token summarises the text

    def forward(
        self, ids: torch.Tensor, attention: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.features(ids, attention)
        probs = torch.softmax(self.head(features), dim=1)
        return features, probs, probs.max(dim=1, keepdim=True).values
