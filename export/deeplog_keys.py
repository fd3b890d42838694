"""DeepLog's log-key model (Du et al., CCS'17): an LSTM that predicts the next log key.

A key is normal if it is among the g likeliest predictions given the h keys before it.

The paper fixes g=9 for HDFS's 29 keys. What g means depends on the vocabulary size (top 9 of
17 keys accepts more than half of them), so g can instead be calibrated: train on most normal
sessions, then take the smallest g whose false-alarm rate on the held-out normal sessions is at
most a target. Only normal training data is used to choose it, never labelled anomalies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from export.contract.vocab import UNKNOWN
from export.contract.windows import windows_of_sessions
from export.fitting import fit


@dataclass(frozen=True)
class KeyModelConfig:
    """The paper's defaults: h=10, g=9, two LSTM layers of 64 units."""

    window: int = 10  # h
    top_g: int | None = 9  # g; None: calibrate it on held-out normal sessions
    false_alarm_target: float = 0.005  # calibration: most held-out sessions to flag (share)
    holdout: float = 0.2  # calibration: share of normal sessions held out of training
    hidden: int = 64
    layers: int = 2
    embedding: int = 32
    end_marker: bool = True
    epochs: int = 30
    batch_size: int = 512
    learning_rate: float = 2e-3
    seed: int = 0


class KeyLSTM(nn.Module):
    """Window of keys -> logits over the whole key vocabulary."""

    def __init__(self, vocab_size: int, config: KeyModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, config.embedding)
        self.lstm = nn.LSTM(config.embedding, config.hidden, config.layers, batch_first=True)
        self.head = nn.Linear(config.hidden, vocab_size)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(windows))
        return self.head(out[:, -1, :])


def grown_key_model(model: KeyLSTM, config: KeyModelConfig, vocab_size: int) -> KeyLSTM:
    """``model`` over a larger vocabulary (keys appended): old keys keep their embedding and
    output rows; each new key starts as UNKNOWN, the key every new template was until now,
    so before learning it the model judges it as it judged those lines."""
    old = model.embed.num_embeddings
    if vocab_size < old:
        raise ValueError(f"a vocabulary cannot shrink ({old} -> {vocab_size} keys)")
    grown = KeyLSTM(vocab_size, config)
    grown.lstm.load_state_dict(model.lstm.state_dict())
    with torch.no_grad():
        grown.embed.weight[:old] = model.embed.weight
        grown.embed.weight[old:] = model.embed.weight[UNKNOWN]
        grown.head.weight[:old] = model.head.weight
        grown.head.weight[old:] = model.head.weight[UNKNOWN]
        grown.head.bias[:old] = model.head.bias
        grown.head.bias[old:] = model.head.bias[UNKNOWN]
    return grown


class KeyModelServing(nn.Module):
    """What is exported: the decision's inputs in, only what the decision needs out.

    The client never pulls a full probability vector: it gets the actual key's rank and the
    top-g keys with their probabilities.
    """

    def __init__(self, model: KeyLSTM, top_g: int) -> None:
        super().__init__()
        self.model = model
        self.top_g = top_g

    def forward(
        self, windows: torch.Tensor, next_key: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.model(windows)
        actual = logits.gather(1, next_key)
        rank = (logits > actual).sum(dim=1, keepdim=True)
        top = torch.topk(torch.softmax(logits, dim=1), self.top_g, dim=1)
        return rank, top.indices, top.values


@dataclass(frozen=True)
class TrainingReport:
    windows: int
    epochs: int
    final_loss: float
    seconds: float
    top_g: int  # the g the model is served with
    held_out_sessions: int = 0
    false_alarm_by_g: dict[int, float] | None = None  # calibration: g -> held-out flagged share


def split_holdout(
    sessions: list[list[int]], config: KeyModelConfig, rng: np.random.Generator | None = None
) -> tuple[list[list[int]], list[list[int]]]:
    """(sessions trained on, normal sessions held out to calibrate g); nothing is held out when
    g is fixed. The split is the first draw of a generator seeded with ``config.seed``, so the
    publisher gets the same held-out sessions (its check set) as training did."""
    if config.top_g is not None:
        return sessions, []
    rng = rng or np.random.default_rng(config.seed)
    order = rng.permutation(len(sessions))
    cut = round(len(sessions) * config.holdout)
    if cut < 1 or cut >= len(sessions):
        raise ValueError(f"cannot hold out {config.holdout:.0%} of {len(sessions)} sessions")
    return [sessions[i] for i in order[cut:]], [sessions[i] for i in order[:cut]]


def next_key_loss(
    model: KeyLSTM, windows: np.ndarray, next_keys: np.ndarray
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The batch loss ``fit`` minimises, for training and the online update alike:
    cross-entropy of each window's next key."""
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(windows), torch.from_numpy(next_keys)
    return lambda idx: loss_fn(model(xt[idx]), yt[idx])


def train_key_model(
    sessions: list[list[int]],
    vocab_size: int,
    config: KeyModelConfig,
    progress: bool = True,
) -> tuple[KeyLSTM, TrainingReport]:
    """Train on normal sessions only (DeepLog learns what normal looks like); calibrate g."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    sessions, held_out = split_holdout(sessions, config, rng)
    x, y = windows_of_sessions(sessions, config.window, config.end_marker)
    if len(x) == 0:
        raise ValueError("no training windows: the training data has no sessions")
    model = KeyLSTM(vocab_size, config)
    start = time.perf_counter()
    loss_value = fit(
        model,
        next_key_loss(model, x, y),
        len(x),
        config.epochs,
        config.batch_size,
        config.learning_rate,
        rng,
        "train deeplog_keys",
        progress,
    )
    seconds = time.perf_counter() - start
    if config.top_g is not None:
        return model, TrainingReport(len(x), config.epochs, loss_value, seconds, config.top_g)
    worst = worst_ranks(model, held_out, config.window, config.end_marker)
    top_g, rates = calibrated_g(worst, vocab_size, config.false_alarm_target)
    report = TrainingReport(len(x), config.epochs, loss_value, seconds, top_g, len(held_out), rates)
    return model, report


def calibrated_g(
    worst: np.ndarray, vocab_size: int, target: float, at_least: int = 1
) -> tuple[int, dict[int, float]]:
    """The smallest g (from ``at_least``) that flags at most ``target`` of the sessions whose
    worst ranks are ``worst``, and the share flagged at each g."""
    rates = {g: float(np.mean(worst >= g)) for g in range(1, vocab_size + 1)}
    return min(g for g, rate in rates.items() if g >= at_least and rate <= target), rates


def worst_ranks(
    model: KeyLSTM, sessions: list[list[int]], window: int, end_marker: bool, batch: int = 8192
) -> np.ndarray:
    """Per session, the highest rank any of its keys got: flagged at g iff worst rank >= g."""
    x, y = windows_of_sessions(sessions, window, end_marker)
    ranks = np.empty(len(y), dtype=np.int64)
    with torch.no_grad():
        for i in range(0, len(y), batch):
            logits = model(torch.from_numpy(x[i : i + batch]))
            actual = logits.gather(1, torch.from_numpy(y[i : i + batch, None]))
            ranks[i : i + batch] = (logits > actual).sum(dim=1).numpy()
    lengths = [len(s) + (1 if end_marker else 0) for s in sessions]
    owners = np.repeat(np.arange(len(sessions)), lengths)
    worst = np.zeros(len(sessions), dtype=np.int64)
    np.maximum.at(worst, owners, ranks)
    return worst


def next_key_probabilities(
    model: KeyLSTM, sessions: list[list[int]], window: int, end_marker: bool, batch: int = 8192
) -> list[np.ndarray]:
    """Per session, the model's probability of each of its keys (and of END) after the keys
    before it: what the workflow's edges keep as the model's view of each transition."""
    x, y = windows_of_sessions(sessions, window, end_marker)
    probs = np.empty(len(y), dtype=np.float64)
    with torch.no_grad():
        for i in range(0, len(y), batch):
            p = torch.softmax(model(torch.from_numpy(x[i : i + batch])), dim=1)
            probs[i : i + batch] = p.gather(1, torch.from_numpy(y[i : i + batch, None]))[:, 0]
    cuts = np.cumsum([len(s) + (1 if end_marker else 0) for s in sessions])[:-1]
    return np.split(probs, cuts)
