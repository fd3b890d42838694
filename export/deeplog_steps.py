"""DeepLog's log-key model, stepped once per key: an LSTM over the whole session so far.

The windowed model (export/deeplog_keys.py, the paper's) re-reads the h keys before every key,
about h LSTM steps per key, and forgets everything older. This one reads each key once and
carries the LSTM state from one key to the next, so a key is predicted from its session's
whole prefix. The decision is DeepLog's: a key is abnormal if it is unknown or not among the g
likeliest next keys; g is calibrated on normal training sessions the model did not learn from.

A served request is a batch of *stretches*: a stretch is a run of one session's keys, after
the key before it (START for the session's first) and the LSTM state that key was read in
(zeros at the session's start). A closed session is one stretch ``[START, k1 .. kn, END]``
from the zero state; a live session sends each new run of keys as a stretch with the state the
last answer gave back. The state is the client's to hold, not the server's: any replica can
answer any step, and a replica that restarts loses nothing (README, "Stepwise key model").
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from export.contract.vocab import END, START, UNKNOWN
from export.deeplog_keys import calibrated_g
from export.fitting import fit
from export.input_guard import poison


@dataclass(frozen=True)
class StepModelConfig:
    """Two LSTM layers of 64 units as the paper's; g calibrated over ``folds`` folds."""

    top_g: int | None = None  # g; None: calibrate it on out-of-fold normal sessions
    false_alarm_target: float = 0.0015  # calibration: most normal sessions to flag (share)
    folds: int = 5  # calibration: each fold's sessions are scored by a model trained without them
    hidden: int = 64
    layers: int = 2
    embedding: int = 32
    epochs: int = 20
    batch_sessions: int = 64
    learning_rate: float = 2e-3
    seed: int = 0

    def state_width(self) -> int:
        """Floats in one session's carried state: h and c of every layer."""
        return 2 * self.layers * self.hidden


class StepLSTM(nn.Module):
    """Keys in, logits of the next key at every position out, state carried in and out."""

    def __init__(self, vocab_size: int, config: StepModelConfig) -> None:
        super().__init__()
        self.layers, self.hidden = config.layers, config.hidden
        self.embed = nn.Embedding(vocab_size, config.embedding)
        self.lstm = nn.LSTM(config.embedding, config.hidden, config.layers, batch_first=True)
        self.head = nn.Linear(config.hidden, vocab_size)

    def forward(
        self,
        keys: torch.Tensor,
        state: torch.Tensor | None = None,
        steps: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``keys`` [B, T] read from ``state`` [B, 2 * layers * hidden] (zeros if None);
        ``steps`` [B]: how many of each row's keys are real, the state out is the one after
        them (all T if None). Returns logits [B, T, vocab] and the state out."""
        batch = keys.shape[0]
        if state is None:
            state = keys.new_zeros((batch, 2 * self.layers * self.hidden), dtype=torch.float32)
        h0, c0 = state.reshape(batch, 2, self.layers, self.hidden).permute(1, 2, 0, 3)
        x = self.embed(keys)
        if steps is None:
            out, (hn, cn) = self.lstm(x, (h0.contiguous(), c0.contiguous()))
        else:
            packed = nn.utils.rnn.pack_padded_sequence(
                x, steps.cpu(), batch_first=True, enforce_sorted=False
            )
            out, (hn, cn) = self.lstm(packed, (h0.contiguous(), c0.contiguous()))
            out, _ = nn.utils.rnn.pad_packed_sequence(
                out, batch_first=True, total_length=x.shape[1]
            )
        state_out = torch.stack([hn, cn]).permute(2, 0, 1, 3).reshape(batch, -1)
        return self.head(out), state_out


class StepModelServing(nn.Module):
    """What is exported: stretches in, each position's rank and top g, and the state out.

    KEYS [B, T]: the key before the stretch, then its keys, padded on the right; LENGTHS
    [B, 1]: the row's real columns (at least 2); STATE [B, S]: the state the first column is
    read in. Position t answers for column t + 1 (RANK, TOP_KEYS, TOP_PROBS: T - 1 positions);
    STATE out is the state the row's last real key is to be read in: what the next stretch
    of that session starts from. A row whose length is outside [2, T] is answered with -1 and
    NaN, as the input guard answers any other bad row.
    """

    def __init__(self, model: StepLSTM, top_g: int) -> None:
        super().__init__()
        self.model = model
        self.top_g = top_g
        # While exported the LSTM runs every row to the end: the graph's LSTM nodes get the
        # rows' lengths afterwards (wire_sequence_lengths), which is what the packed path
        # computes eagerly (a packed sequence's lengths are data the tracer cannot follow).
        self.exporting = False

    def forward(
        self, keys: torch.Tensor, lengths: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        # The row width as a tensor (a sum of ones), so the export keeps the axis dynamic.
        columns = keys.new_ones(keys.shape[1]).sum()
        lengths = lengths[:, 0]
        bad = (lengths < 2) | (lengths > columns)
        steps = torch.minimum(lengths.clamp(min=2), columns) - 1
        logits, state_out = self.model(keys[:, :-1], state, None if self.exporting else steps)
        actual = logits.gather(2, keys[:, 1:, None])
        rank = (logits > actual).sum(dim=2)
        top = torch.topk(torch.softmax(logits, dim=2), self.top_g, dim=2)
        outputs = (rank, top.indices, top.values, state_out)
        return tuple(poison(o, bad) for o in outputs)


def wire_sequence_lengths(path: str, keys: str = "KEYS", lengths: str = "LENGTHS") -> None:
    """Give every LSTM node of the exported graph its rows' lengths as ``sequence_lens``.

    The exporter writes nn.LSTM as ONNX LSTM nodes without lengths, so every row would run
    all T - 1 steps and the state out would be the one after the padding. With
    ``sequence_lens`` the runtime stops each row at its own length: the state out is the one
    after its last real key (what ``StepLSTM`` computes eagerly with a packed sequence) and
    the outputs past it are zeros. The lengths are clipped to [1, T - 1] as the serving
    module clips them; rows outside that are poisoned by the module itself."""
    model = onnx.load(path)
    graph = model.graph
    lstm = [n for n in graph.node if n.op_type == "LSTM"]
    if not lstm:
        raise ValueError(f"{path} has no LSTM node to give lengths to")
    name = "sequence_lens"
    const = [
        helper.make_tensor("seq_axes", TensorProto.INT64, [1], [1]),
        helper.make_tensor("seq_one", TensorProto.INT64, [1], [1]),
    ]
    nodes = [
        helper.make_node("Squeeze", [lengths, "seq_axes"], ["seq_rows"]),
        helper.make_node("Sub", ["seq_rows", "seq_one"], ["seq_steps"]),
        helper.make_node("Shape", [keys], ["seq_columns"], start=1, end=2),
        helper.make_node("Sub", ["seq_columns", "seq_one"], ["seq_most"]),
        helper.make_node("Min", ["seq_steps", "seq_most"], ["seq_capped"]),
        helper.make_node("Max", ["seq_capped", "seq_one"], ["seq_floored"]),
        helper.make_node("Cast", ["seq_floored"], [name], to=TensorProto.INT32),
    ]
    for node in lstm:
        while len(node.input) < 5:
            node.input.append("")
        node.input[4] = name
    graph.initializer.extend(const)
    # Topological order: the lengths are computed before the first node that reads them.
    first = min(i for i, n in enumerate(graph.node) if n.op_type == "LSTM")
    rest = list(graph.node)
    del graph.node[:]
    graph.node.extend(rest[:first] + nodes + rest[first:])
    onnx.checker.check_model(model)
    onnx.save(model, path)


@dataclass(frozen=True)
class StepTrainingReport:
    sessions: int
    keys: int
    epochs: int
    final_loss: float
    seconds: float
    top_g: int
    calibration_sessions: int = 0  # out-of-fold normal sessions g was calibrated on
    false_alarm_by_g: dict[int, float] | None = None


def padded_sessions(sessions: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``[START, k1 .. kn]`` and targets ``[k1 .. kn, END]`` of each session, padded on
    the right (inputs with END, targets with -100, which the loss ignores): [N, longest + 1]."""
    width = max((len(s) for s in sessions), default=0) + 1
    inputs = np.full((len(sessions), width), END, dtype=np.int64)
    targets = np.full((len(sessions), width), -100, dtype=np.int64)
    inputs[:, 0] = START
    for i, s in enumerate(sessions):
        inputs[i, 1 : len(s) + 1] = s
        targets[i, : len(s)] = s
        targets[i, len(s)] = END
    return inputs, targets


def _train(
    sessions: list[list[int]],
    vocab_size: int,
    config: StepModelConfig,
    rng: np.random.Generator,
    desc: str,
    progress: bool,
) -> tuple[StepLSTM, float]:
    model = StepLSTM(vocab_size, config)
    inputs, targets = padded_sessions(sessions)
    lengths = torch.from_numpy(np.array([len(s) + 1 for s in sessions]))
    xt, yt = torch.from_numpy(inputs), torch.from_numpy(targets)
    loss_fn = nn.CrossEntropyLoss(ignore_index=-100)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        # Cut the batch to its own longest session: most HDFS sessions are short.
        width = int(lengths[idx].max())
        logits, _ = model(xt[idx, :width])
        return loss_fn(logits.reshape(-1, vocab_size), yt[idx, :width].reshape(-1))

    loss = fit(
        model,
        batch_loss,
        len(sessions),
        config.epochs,
        config.batch_sessions,
        config.learning_rate,
        rng,
        desc,
        progress,
    )
    return model, loss


def train_step_model(
    sessions: list[list[int]], vocab_size: int, config: StepModelConfig, progress: bool = True
) -> tuple[StepLSTM, StepTrainingReport]:
    """Train on normal sessions only; calibrate g on out-of-fold scores of all of them.

    Calibration is cross-fitted: each of ``folds`` models learns all sessions but one fold's
    and ranks that fold's keys, so every training session is scored by a model that never saw
    it, and g is chosen on all of them (a 0.15% target on a fifth of HDFS's 4,855 training
    sessions would be decided by one or two sessions). The served model then learns them all.
    """
    if not sessions:
        raise ValueError("no training sessions")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    start = time.perf_counter()
    top_g, rates, calibrated = config.top_g, None, 0
    if top_g is None:
        worst = out_of_fold_worst_ranks(sessions, vocab_size, config, rng, progress)
        top_g, rates = calibrated_g(worst, vocab_size, config.false_alarm_target)
        calibrated = len(worst)
    model, loss = _train(sessions, vocab_size, config, rng, "train deeplog_steps", progress)
    report = StepTrainingReport(
        len(sessions),
        sum(len(s) + 1 for s in sessions),
        config.epochs,
        loss,
        time.perf_counter() - start,
        top_g,
        calibrated,
        rates,
    )
    return model, report


def out_of_fold_worst_ranks(
    sessions: list[list[int]],
    vocab_size: int,
    config: StepModelConfig,
    rng: np.random.Generator,
    progress: bool = True,
) -> np.ndarray:
    """Per session, the worst rank its keys (and end) got from a model trained without it."""
    if config.folds < 2 or config.folds > len(sessions):
        raise ValueError(f"cannot cross-fit {config.folds} folds over {len(sessions)} sessions")
    fold_of = rng.permutation(len(sessions)) % config.folds
    worst = np.zeros(len(sessions), dtype=np.int64)
    for fold in range(config.folds):
        held = np.flatnonzero(fold_of == fold)
        trained_on = [s for s, f in zip(sessions, fold_of, strict=True) if f != fold]
        desc = f"calibrate deeplog_steps, fold {fold + 1}/{config.folds}"
        model, _ = _train(trained_on, vocab_size, config, rng, desc, progress)
        worst[held] = session_worst_ranks(model, [sessions[i] for i in held])
    return worst


def position_ranks(
    model: StepLSTM, sessions: list[list[int]], batch: int = 512
) -> list[np.ndarray]:
    """Per session, the rank of each of its keys and of its END, from the whole prefix."""
    order = sorted(range(len(sessions)), key=lambda i: len(sessions[i]))
    found: dict[int, np.ndarray] = {}
    with torch.no_grad():
        for i in range(0, len(order), batch):
            rows = order[i : i + batch]
            inputs, targets = padded_sessions([sessions[r] for r in rows])
            logits, _ = model(torch.from_numpy(inputs))
            target = torch.from_numpy(targets).clamp(min=0)
            rank = (logits > logits.gather(2, target[..., None])).sum(dim=2).numpy()
            for j, r in enumerate(rows):
                found[r] = rank[j, : len(sessions[r]) + 1]
    return [found[i] for i in range(len(sessions))]


def session_worst_ranks(model: StepLSTM, sessions: list[list[int]]) -> np.ndarray:
    """Per session, the highest rank any of its keys got (UNKNOWN counts as the vocabulary's
    size: flagged at every g)."""
    worst = np.zeros(len(sessions), dtype=np.int64)
    for i, (s, ranks) in enumerate(zip(sessions, position_ranks(model, sessions), strict=True)):
        worst[i] = model.head.out_features if UNKNOWN in s else int(ranks.max())
    return worst
