"""ASGNet trained end to end on labelled units (HDFS sessions, BGL windows, ...).

Order: the tokenizer and V-Net learn from the training units without labels; S-Net's RoBERTa is
pre-trained by masked language modelling on their texts (or loaded from a local checkpoint),
then fine-tuned with its semantic head; G-Net learns last, on the frozen S-Net and V-Net
outputs. Every supervised stage stops early on the validation split's macro F1 and keeps its
best epoch. Identical (keys, label) rows are trained on once, weighted by how often they occur.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.nn import functional
from transformers import RobertaForMaskedLM

from export.contract.units import NORMAL, count_vectors, unit_text
from export.contract.vocab import KeyVocabulary
from export.fitting import EarlyStopping, fit
from export.gnet import GNet, GNetConfig, LatentClassifier
from export.log_tokenizer import encode, train_tokenizer
from export.metrics import Scores, classification_scores
from export.snet import SNet, SNetConfig, load_checkpoint, new_encoder, pretrain_mlm, trim
from export.vnet import VNet, VNetConfig, train_vnet


@dataclass(frozen=True)
class Units:
    """Labelled units, deduplicated: identical (keys, label) rows are one unit whose weight is
    how many rows it stands for; ``names`` keeps the first row's id (for similar incidents)."""

    keys: tuple[tuple[int, ...], ...]
    labels: np.ndarray  # int64 class ids, 0 = normal
    weights: np.ndarray  # float32
    names: tuple[str, ...]

    @classmethod
    def from_rows(
        cls, keys: Sequence[Sequence[int]], labels: Sequence[int], names: Sequence[str]
    ) -> Units:
        order: dict[tuple[tuple[int, ...], int], list[int]] = {}
        for i, (unit, label) in enumerate(zip(keys, labels, strict=True)):
            order.setdefault((tuple(unit), int(label)), []).append(i)
        return cls(
            keys=tuple(k for k, _ in order),
            labels=np.array([label for _, label in order], dtype=np.int64),
            weights=np.array([len(rows) for rows in order.values()], dtype=np.float32),
            names=tuple(names[rows[0]] for rows in order.values()),
        )

    def __len__(self) -> int:
        return len(self.keys)

    def texts(self, vocabulary: KeyVocabulary) -> list[str]:
        return [unit_text([vocabulary.template(k) for k in unit]) for unit in self.keys]

    def counts(self, vocabulary: KeyVocabulary) -> np.ndarray:
        return count_vectors(self.keys, vocabulary.size)

    def join(self, other: Units) -> Units:
        """Both sets of units, in order (no deduplication across them)."""
        return Units(
            self.keys + other.keys,
            np.concatenate([self.labels, other.labels]),
            np.concatenate([self.weights, other.weights]),
            self.names + other.names,
        )

    def select(self, rows: np.ndarray) -> Units:
        return Units(
            tuple(self.keys[i] for i in rows),
            self.labels[rows],
            self.weights[rows],
            tuple(self.names[i] for i in rows),
        )

    def to_json(self) -> dict[str, list]:
        return {
            "keys": [list(k) for k in self.keys],
            "labels": self.labels.tolist(),
            "weights": self.weights.tolist(),
            "names": list(self.names),
        }

    @classmethod
    def from_json(cls, data: dict[str, list]) -> Units:
        return cls(
            tuple(tuple(k) for k in data["keys"]),
            np.array(data["labels"], dtype=np.int64),
            np.array(data["weights"], dtype=np.float32),
            tuple(data["names"]),
        )

    @classmethod
    def empty(cls) -> Units:
        return cls((), np.zeros(0, np.int64), np.zeros(0, np.float32), ())


def stratified_split(
    labels: Sequence[int], fractions: Sequence[float], rng: np.random.Generator
) -> list[np.ndarray]:
    """Row indices per split; each class is shuffled and cut by ``fractions`` on its own, so a
    rare class lands in every split it can (one row each before any split gets a second)."""
    labels = np.asarray(labels)
    parts: list[list[int]] = [[] for _ in fractions]
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        sizes = [int(f * len(rows)) for f in fractions]
        for _ in range(len(rows) - sum(sizes)):  # leftovers go to the emptiest splits first
            sizes[int(np.argmin([s / f for s, f in zip(sizes, fractions, strict=True)]))] += 1
        cuts = np.cumsum([0, *sizes])
        for i, part in enumerate(parts):
            part.extend(rows[cuts[i] : cuts[i + 1]].tolist())
    return [np.sort(np.array(p, dtype=np.int64)) for p in parts]


@dataclass(frozen=True)
class AsgnetConfig:
    snet: SNetConfig = field(default_factory=SNetConfig)
    vnet: VNetConfig = field(default_factory=VNetConfig)
    gnet: GNetConfig = field(default_factory=GNetConfig)
    tokenizer_vocab: int = 2000
    finetune_epochs: int = 6
    finetune_patience: int = 2
    finetune_learning_rate: float = 2e-4
    # Weight each class by the inverse of its share, so rare alert categories are not ignored.
    balance_classes: bool = True


@dataclass
class TrainedAsgnet:
    tokenizer: Tokenizer
    vnet: VNet
    snet: SNet
    gnet: GNet
    vnet_head: LatentClassifier  # V-Net alone, for the ablation; not served
    classes: tuple[str, ...]
    vocabulary: KeyVocabulary
    report: dict[str, Any]
    config: AsgnetConfig  # what a later fine-tune on feedback continues with


@dataclass(frozen=True)
class Encoded:
    """A split as the networks see it."""

    ids: torch.Tensor
    attention: torch.Tensor
    counts: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor  # multiplicity x class balance: what the losses use
    units: Units


def class_weights(units: Units, classes: int, balance: bool) -> np.ndarray:
    """Per class: the inverse of its (weighted) share of ``units``, or ones."""
    weight = np.ones(classes)
    if balance:
        share = np.bincount(units.labels, weights=units.weights, minlength=classes)
        present = share > 0
        weight[present] = share.sum() / (present.sum() * share[present])
    return weight


def encode_units(
    units: Units, vocabulary: KeyVocabulary, tokenizer: Tokenizer, class_weight: np.ndarray
) -> Encoded:
    ids, attention = encode(tokenizer, units.texts(vocabulary))
    return Encoded(
        torch.from_numpy(ids),
        torch.from_numpy(attention),
        torch.from_numpy(units.counts(vocabulary)),
        torch.from_numpy(units.labels),
        torch.from_numpy((units.weights * class_weight[units.labels]).astype(np.float32)),
        units,
    )


def _weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    ce = functional.cross_entropy(logits, labels, reduction="none")
    return (ce * weights).sum() / weights.sum()


def snet_loss(snet: SNet, split: Encoded) -> Callable[[torch.Tensor], torch.Tensor]:
    """The semantic head's weighted cross-entropy on a batch of ``split``'s rows."""

    def loss(idx: torch.Tensor) -> torch.Tensor:
        ids, attention = trim(split.ids[idx], split.attention[idx])
        return _weighted_ce(
            snet.head(snet.features(ids, attention)), split.labels[idx], split.weights[idx]
        )

    return loss


def snet_outputs(
    snet: SNet, ids: torch.Tensor, attention: torch.Tensor, batch: int = 128
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features, probs, confidence) for many texts, in batches trimmed to their longest text."""
    parts = []
    snet.eval()
    with torch.no_grad():
        for i in range(0, len(ids), batch):
            parts.append(snet(*trim(ids[i : i + batch], attention[i : i + batch])))
    return tuple(torch.cat(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def _macro_f1(probs: torch.Tensor, split: Encoded, classes: tuple[str, ...]) -> float:
    predicted = probs.argmax(dim=1).numpy()
    return classification_scores(
        split.units.labels, predicted, classes, split.units.weights
    ).macro_f1


def train_asgnet(
    train: Units,
    validation: Units,
    vocabulary: KeyVocabulary,
    classes: tuple[str, ...],
    config: AsgnetConfig,
    encoder_folder: Path | None = None,
    progress: bool = True,
) -> TrainedAsgnet:
    if classes[0] != NORMAL:
        raise ValueError(f"class 0 must be {NORMAL!r}, got {classes[0]!r}")
    if len(train) == 0 or len(validation) == 0:
        raise ValueError("ASGNet needs training and validation units")
    torch.manual_seed(config.snet.seed)
    timings: dict[str, float] = {}

    class_weight = class_weights(train, len(classes), config.balance_classes)

    encoder: RobertaForMaskedLM | None = None
    if encoder_folder is not None:
        encoder, tokenizer = load_checkpoint(encoder_folder, config.snet.max_length)
    else:
        tokenizer = train_tokenizer(
            train.texts(vocabulary), config.tokenizer_vocab, config.snet.max_length
        )
    tr = encode_units(train, vocabulary, tokenizer, class_weight)
    va = encode_units(validation, vocabulary, tokenizer, class_weight)

    vnet, vnet_report = train_vnet(tr.counts.numpy(), config.vnet, progress)
    timings["vnet_s"] = vnet_report.seconds

    pretrain = None
    if encoder is None:  # no checkpoint: pre-train one here
        encoder = new_encoder(tokenizer.get_vocab_size(), config.snet)
        pretrain = pretrain_mlm(
            encoder, tr.ids.numpy(), tr.attention.numpy(), config.snet, progress
        )
        timings["mlm_s"] = pretrain.seconds

    snet = SNet(encoder.roberta, config.snet, len(classes))

    snet_stop = EarlyStopping(
        lambda: _macro_f1(snet_outputs(snet, va.ids, va.attention)[1], va, classes),
        config.finetune_patience,
    )
    clock = time.perf_counter()
    fit(
        snet,
        snet_loss(snet, tr),
        len(train),
        config.finetune_epochs,
        config.snet.batch_size,
        config.finetune_learning_rate,
        np.random.default_rng(config.snet.seed),
        "fine-tune s-net",
        progress,
        snet_stop,
    )
    timings["finetune_s"] = time.perf_counter() - clock

    # G-Net and the V-Net-alone head learn on frozen S-Net and V-Net outputs.
    f_tr, _, c_tr = snet_outputs(snet, tr.ids, tr.attention)
    f_va, _, c_va = snet_outputs(snet, va.ids, va.attention)
    with torch.no_grad():
        z_tr, z_va = vnet(tr.counts), vnet(va.counts)
    g = config.gnet
    torch.manual_seed(g.seed)
    gnet = GNet(f_tr.shape[1], z_tr.shape[1], len(classes), g)
    gnet_stop = EarlyStopping(lambda: _macro_f1(gnet(f_va, c_va, z_va)[0], va, classes), g.patience)
    clock = time.perf_counter()
    fit(
        gnet,
        lambda idx: gnet.loss(f_tr[idx], c_tr[idx], z_tr[idx], tr.labels[idx], tr.weights[idx]),
        len(train),
        g.epochs,
        g.batch_size,
        g.learning_rate,
        np.random.default_rng(g.seed),
        "train g-net",
        progress,
        gnet_stop,
    )
    timings["gnet_s"] = time.perf_counter() - clock

    vnet_head = LatentClassifier(z_tr.shape[1], len(classes), g.hidden)
    head_stop = EarlyStopping(lambda: _macro_f1(vnet_head(z_va), va, classes), g.patience)
    fit(
        vnet_head,
        lambda idx: _weighted_ce(vnet_head.classifier(z_tr[idx]), tr.labels[idx], tr.weights[idx]),
        len(train),
        g.epochs,
        g.batch_size,
        g.learning_rate,
        np.random.default_rng(g.seed),
        "train v-net-alone head",
        progress,
        head_stop,
    )
    report = {
        "train_units": len(train),
        "train_rows": float(train.weights.sum()),
        "validation_units": len(validation),
        "tokenizer_vocab": tokenizer.get_vocab_size(),
        "mlm_final_loss": pretrain.final_loss if pretrain else None,
        "encoder": str(encoder_folder) if encoder_folder else "pre-trained here (MLM)",
        "finetune_epochs_run": len(snet_stop.scores),
        "finetune_best_epoch": snet_stop.best_epoch + 1,
        "finetune_validation_f1": snet_stop.scores,
        "gnet_epochs_run": len(gnet_stop.scores),
        "gnet_best_epoch": gnet_stop.best_epoch + 1,
        "gnet_validation_f1": gnet_stop.best_score,
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    return TrainedAsgnet(
        tokenizer, vnet, snet, gnet, vnet_head, classes, vocabulary, report, config
    )


@dataclass(frozen=True)
class Predictions:
    """Each variant's class probabilities for one split (PyTorch, as trained)."""

    snet: np.ndarray  # S-Net alone: its semantic head
    vnet: np.ndarray  # V-Net alone: a classifier over the latent code
    gated: np.ndarray  # ASGNet: G-Net over both
    snet_confidence: np.ndarray
    features: np.ndarray  # S-Net embeddings (the similar-incident index key)


def predict(trained: TrainedAsgnet, units: Units) -> Predictions:
    ids, attention = encode(trained.tokenizer, units.texts(trained.vocabulary))
    features, snet_probs, confidence = snet_outputs(
        trained.snet, torch.from_numpy(ids), torch.from_numpy(attention)
    )
    with torch.no_grad():
        latent = trained.vnet(torch.from_numpy(units.counts(trained.vocabulary)))
        gated = trained.gnet(features, confidence, latent)[0]
        vnet_probs = trained.vnet_head(latent)
    return Predictions(
        snet_probs.numpy(),
        vnet_probs.numpy(),
        gated.numpy(),
        confidence.numpy()[:, 0],
        features.numpy(),
    )


ABLATION = {"S-Net alone": "snet", "V-Net alone": "vnet", "ASGNet (gated)": "gated"}


def ablation(trained: TrainedAsgnet, units: Units) -> tuple[dict[str, Scores], float]:
    """Scores of each variant on ``units``, and the weighted share of units that were gated."""
    predictions = predict(trained, units)
    scores = {
        variant: classification_scores(
            units.labels,
            getattr(predictions, attr).argmax(axis=1),
            trained.classes,
            units.weights,
        )
        for variant, attr in ABLATION.items()
    }
    gated = predictions.snet_confidence < float(trained.gnet.threshold)
    return scores, float(units.weights[gated].sum() / units.weights.sum())
