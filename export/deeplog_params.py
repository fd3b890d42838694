"""DeepLog's parameter-value model (Du et al., CCS'17, section 3.2), key-conditioned.

For each log key, the sequence of its parameter vectors (time since the previous entry of the
session, then the key's numeric parameters) is a time series; an LSTM predicts the next vector
from the previous h vectors of the same key in the same session (a session's own history: the
first PacketResponder of a block waits for the whole transfer, the next ones do not; in a stream
interleaving many blocks, only the session tells them apart). Where a format has no sessions, the
session is the stream, which is the paper's setting.

The paper trains one LSTM per key; here one LSTM serves every key, conditioned on a key
embedding, so hundreds of keys are one model in Triton rather than hundreds of model folders
(and hundreds of Python backend processes on the embedded server). Vectors are zero-padded to
the widest key; a mask keeps padding out of the loss.

A value is abnormal when its prediction error is outside a Gaussian confidence interval of the
errors on held-out normal data, per key and per dimension, so an alert can say which dimension
deviated and by how much.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch
from torch import nn

from export.contract.metas import Normaliser
from export.fitting import fit


@dataclass(frozen=True)
class ParamModelConfig:
    window: int = 10  # h: previous vectors of the same key
    hidden: int = 64
    layers: int = 2
    key_embedding: int = 16
    confidence: float = 0.99  # of the Gaussian interval on validation errors
    validation: float = 0.2  # share of windows held out to fit the interval
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 2e-3
    seed: int = 0


@dataclass(frozen=True)
class KeySeries:
    """One key's parameter vectors in one session, in order: float array [n, dims].

    A key has as many series as sessions it occurs in."""

    key: int
    vectors: np.ndarray


class ParamLSTM(nn.Module):
    """(h previous vectors of a key, the key) -> the key's next vector, normalised units."""

    def __init__(self, keys: int, width: int, config: ParamModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(keys, config.key_embedding)
        self.lstm = nn.LSTM(
            width + config.key_embedding, config.hidden, config.layers, batch_first=True
        )
        self.head = nn.Linear(config.hidden, width)

    def forward(self, history: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        # history [B, h, width] float32; key [B, 1] int64 -> [B, width]
        embedded = self.embed(key).expand(-1, history.shape[1], -1)
        out, _ = self.lstm(torch.cat([history, embedded], dim=2))
        return self.head(out[:, -1, :])


def key_windows(
    series: np.ndarray, window: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(history [n, h, width], target [n, width], mask [n, width]) for one normalised series.

    The first vectors of a series have fewer than h predecessors; their history is zero-padded
    in front (zero is the training mean after normalisation), as the log-key model pads keys.
    """
    n, dims = series.shape
    padded = np.zeros((n + window, width), dtype=np.float32)
    padded[window:, :dims] = series
    history = np.lib.stride_tricks.sliding_window_view(padded, (window, width))[:n, 0]
    target = padded[window:]
    mask = np.zeros((n, width), dtype=np.float32)
    mask[:, :dims] = 1.0
    return np.ascontiguousarray(history), target, mask


@dataclass(frozen=True)
class ParamTrainingReport:
    windows: int
    validation_windows: int
    epochs: int
    final_loss: float
    seconds: float


@dataclass(frozen=True)
class TrainedParamModel:
    model: ParamLSTM
    normaliser: Normaliser
    dims: dict[int, int]  # key -> its vector length (time gap included)
    thresholds: dict[int, list[float]]  # key -> per-dimension error bound, normalised units
    report: ParamTrainingReport


def fit_normaliser(series: list[KeySeries], keys: int, width: int) -> Normaliser:
    mean = np.zeros((keys, width), dtype=np.float32)
    std = np.ones((keys, width), dtype=np.float32)
    by_key: dict[int, list[np.ndarray]] = {}
    for s in series:
        by_key.setdefault(s.key, []).append(s.vectors)
    for key, parts in by_key.items():
        vectors = np.concatenate(parts)
        d = vectors.shape[1]
        spread = vectors.std(axis=0)
        mean[key, :d] = vectors.mean(axis=0)
        # A constant dimension gets unit scale, so any change from it stands out.
        std[key, :d] = np.where(spread > 1e-6, spread, 1.0)
    return Normaliser(mean, std)


def train_param_model(
    series: list[KeySeries], keys: int, config: ParamModelConfig, progress: bool = True
) -> TrainedParamModel:
    """Train on normal series only; fit per-key, per-dimension thresholds on held-out windows."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    series = [s for s in series if len(s.vectors)]
    if not series:
        raise ValueError("no parameter vectors to train on")
    width = max(s.vectors.shape[1] for s in series)
    normaliser = fit_normaliser(series, keys, width)
    parts = []
    for s in series:
        history, target, mask = key_windows(
            normaliser.apply(s.key, s.vectors).astype(np.float32), config.window, width
        )
        parts.append((history, np.full(len(target), s.key, dtype=np.int64), target, mask))
    every = [np.concatenate(column) for column in zip(*parts, strict=True)]
    # A random share of the windows validates: errors on windows the model never fitted.
    held_out = rng.random(len(every[1])) < config.validation
    x, k, y, m = (torch.from_numpy(a[~held_out]) for a in every)
    vx, vk, vy = (a[held_out] for a in every[:3])
    model = ParamLSTM(keys, width, config)
    start = time.perf_counter()

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        error = (model(x[idx], k[idx, None]) - y[idx]) ** 2 * m[idx]
        return error.sum() / m[idx].sum().clamp(min=1.0)

    loss_value = fit(
        model,
        batch_loss,
        len(x),
        config.epochs,
        config.batch_size,
        config.learning_rate,
        rng,
        "train deeplog_params",
        progress,
    )
    dims = {s.key: s.vectors.shape[1] for s in series}
    thresholds = gaussian_thresholds(model, vx, vk, vy, dims, config.confidence)
    report = ParamTrainingReport(
        len(x), len(vx), config.epochs, loss_value, time.perf_counter() - start
    )
    return TrainedParamModel(model, normaliser, dims, thresholds, report)


def gaussian_thresholds(
    model: ParamLSTM,
    history: np.ndarray,
    keys: np.ndarray,
    target: np.ndarray,
    dims: dict[int, int],
    confidence: float,
) -> dict[int, list[float]]:
    """Per key and dimension: mean + z * std of |error| on validation windows.

    z is the two-sided quantile of the confidence (2.58 for 99%). A key with fewer than two
    validation windows gets an infinite bound: no data, no claim.
    """
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    with torch.no_grad():
        predicted = model(torch.from_numpy(history), torch.from_numpy(keys[:, None])).numpy()
    errors = np.abs(predicted - target)
    bounds = {}
    for key, d in dims.items():
        rows = errors[keys == key, :d]
        if len(rows) < 2:
            bounds[key] = [float("inf")] * d
        else:
            bounds[key] = (rows.mean(axis=0) + z * rows.std(axis=0)).astype(float).tolist()
    return bounds


def widened_thresholds(
    below: dict[int, list[float]],
    above: dict[int, list[float]],
    deviations: list[tuple[int, int, float]],
    margin: float = 0.05,
) -> tuple[dict[int, list[float]], dict[int, list[float]]]:
    """DeepLog's update of the parameter-value model, for its bounds: each (key, dimension,
    signed normalised deviation from the prediction) an operator called normal widens the bound
    on its side until the deviation is inside, with ``margin`` to spare. Bounds only grow."""
    widened = {key: list(b) for key, b in below.items()}, {key: list(b) for key, b in above.items()}
    for key, dim, deviation in deviations:
        side = widened[1] if deviation > 0 else widened[0]
        side[key][dim] = max(side[key][dim], abs(deviation) * (1 + margin))
    return widened
