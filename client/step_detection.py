"""DeepLog's log-key check through the stepwise model (``deeplog_steps``): each key is read
once, the LSTM state of every open session is held here and sent with its next keys.

A request row is a *stretch* of one session: the key before it, its new keys, and the state
the answer to the stretch before gave back (export/deeplog_steps.py). A closed session is one
stretch from the zero state. The verdicts are DeepLog's (unknown key, or rank >= g), judged
with the g of the version this client is bound to; every request names that version, because
a state means something only to the weights that wrote it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from client.alerts import AnyAlert, KeyAlert, key_reason, key_ref
from client.detection import PartResult
from client.stage_clock import DECISIONS, TRITON, StageClock
from client.triton_client import TritonClient
from export.contract.metas import StepModelMeta
from export.contract.specs import DEEPLOG_STEPS
from export.contract.vocab import END, START, UNKNOWN

# Keys per request (rows x columns): the answer carries g keys and probabilities per key.
REQUEST_KEYS = 16_384


@dataclass(frozen=True)
class StepScores:
    """The model's answer for a batch of stretches: positions are a row's keys after its
    first column; beyond the row's length they are padding (never anomalous)."""

    rank: np.ndarray  # [B, P]
    top_keys: np.ndarray  # [B, P, g]
    top_probs: np.ndarray  # [B, P, g]
    anomalous: np.ndarray  # [B, P] bool
    state: np.ndarray  # [B, S] the state each row's last key is to be read in


class StepModel:
    """deeplog_steps served by Triton, pinned to one version (its states are its own)."""

    def __init__(self, triton: TritonClient, meta: StepModelMeta) -> None:
        self.triton, self.meta = triton, meta

    def zero_state(self, rows: int) -> np.ndarray:
        return np.zeros((rows, self.meta.state_width), dtype=np.float32)

    def score(self, keys: np.ndarray, lengths: np.ndarray, state: np.ndarray) -> StepScores:
        """Score stretches: ``keys`` [B, T] (the key before, then the stretch, padded),
        ``lengths`` [B] real columns, ``state`` [B, S]; requests of up to REQUEST_KEYS keys."""
        if keys.ndim != 2 or keys.shape[1] < 2 or len(lengths) != len(keys):
            raise ValueError(f"stretches must be [rows, >= 2 columns], got {keys.shape}")
        rows = max(1, REQUEST_KEYS // keys.shape[1])
        outputs = ["RANK", "TOP_KEYS", "TOP_PROBS", "STATE_OUT"]
        inputs = {
            "KEYS": keys.astype(np.int64, copy=False),
            "LENGTHS": lengths.astype(np.int64).reshape(-1, 1),
            "STATE": state.astype(np.float32, copy=False),
        }
        positions, g, width = keys.shape[1] - 1, self.meta.top_g, self.meta.state_width

        def output_bytes(rows: int) -> dict[str, int]:
            return {
                "RANK": rows * positions * 8,
                "TOP_KEYS": rows * positions * g * 8,
                "TOP_PROBS": rows * positions * g * 4,
                "STATE_OUT": rows * width * 4,
            }

        parts = self.triton.infer_parts(
            DEEPLOG_STEPS.name,
            inputs,
            outputs,
            self.meta.version,
            min(rows, 8192),
            output_bytes if self.triton.shared is not None else None,
        )
        out = {n: np.concatenate([p.outputs[n] for p in parts]) for n in outputs}
        rank = out["RANK"]
        real = np.arange(rank.shape[1])[None, :] < (lengths[:, None] - 1)
        anomalous = real & ((rank >= self.meta.top_g) | (keys[:, 1:] == UNKNOWN))
        return StepScores(rank, out["TOP_KEYS"], out["TOP_PROBS"], anomalous, out["STATE_OUT"])

    def sessions_anomalous(self, sessions: Sequence[Sequence[int]]) -> np.ndarray:
        """Verdict per complete key session (True = abnormal)."""
        return self.worst_ranks(sessions) >= self.meta.top_g

    def worst_ranks(self, sessions: Sequence[Sequence[int]]) -> np.ndarray:
        """Per complete key session, the highest rank any of its keys (or its end) got, an
        unknown key counting as the vocabulary's size: abnormal at g iff worst >= g."""
        worst = np.zeros(len(sessions), dtype=np.int64)
        for chosen, keys, lengths in closed_batches(sessions, self.meta.end_marker):
            scores = self.score(keys, lengths, self.zero_state(len(chosen)))
            worst[chosen] = worst_of(scores.rank, keys, lengths, self.meta.vocabulary.size)
        return worst


def closed_batches(
    sessions: Sequence[Sequence[int]], end_marker: bool = True
) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """Complete sessions as requests of one stretch each (``closed_stretches``), sessions of
    like length together (little padding), up to REQUEST_KEYS keys a request: (the sessions'
    indices, keys, lengths)."""
    order = sorted(range(len(sessions)), key=lambda i: len(sessions[i]))
    start = 0
    while start < len(order):
        stop = start + 1
        # Take sessions while the request (rows x its longest, the last) stays within budget.
        while stop < len(order) and (stop - start + 1) * (len(sessions[order[stop]]) + 2) <= max(
            REQUEST_KEYS, len(sessions[order[start]]) + 2
        ):
            stop += 1
        chosen = order[start:stop]
        yield (chosen, *closed_stretches([sessions[i] for i in chosen], end_marker))
        start = stop


def worst_of(
    rank: np.ndarray, keys: np.ndarray, lengths: np.ndarray, vocab_size: int
) -> np.ndarray:
    """Per stretch, its highest rank over its real positions, an unknown key counting as
    ``vocab_size``."""
    real = np.arange(rank.shape[1])[None, :] < (lengths[:, None] - 1)
    ranks = np.where(real & (keys[:, 1:] == UNKNOWN), vocab_size, np.where(real, rank, 0))
    return ranks.max(axis=1)


def closed_stretches(
    sessions: Sequence[Sequence[int]], end_marker: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Each session as one stretch ``[START, k1 .. kn(, END)]``, padded with END: [B, T]
    keys and [B] lengths."""
    lengths = np.array([len(s) + 1 + end_marker for s in sessions], dtype=np.int64)
    keys = np.full((len(sessions), int(lengths.max(initial=2))), END, dtype=np.int64)
    keys[:, 0] = START
    for i, s in enumerate(sessions):
        keys[i, 1 : len(s) + 1] = s
    return keys, lengths


@dataclass(slots=True)
class _StepPart:
    """One open part of a session: its carried state and what its keys found."""

    session: str
    part: int
    state: np.ndarray  # [S] the state ``last`` is to be read in
    last: int  # the key before the next stretch
    position: int  # of the next key in the session
    # Where the part started (what a checkpoint carries: its lines are read again).
    start: int = 0
    start_state: np.ndarray | None = None
    start_last: int = START
    keys: list[int] = field(default_factory=list)
    last_line: int | None = None  # of the part's last key: where its END alert points
    waiting: list[int] = field(default_factory=list)  # keys not yet sent
    lines: list[int | None] = field(default_factory=list)  # of the keys waiting
    alerts: list[AnyAlert] = field(default_factory=list)
    checked: int = 0
    closing: bool = False
    final: bool = False

    @classmethod
    def starting(
        cls, session: str, part: int, state: np.ndarray, last: int, position: int
    ) -> _StepPart:
        return cls(session, part, state, last, position, position, state, last)


class StepStreamingDetector:
    """Checks each key as its line arrives: the waiting keys of every session go as one
    stretch per session, all sessions in one request, each read from its carried state.

    Same interface as ``StreamingDetector``: a batch is sent when ``batch_keys`` keys wait or
    the oldest has waited ``max_delay_s``; ``close`` ends a session (its END is checked) or,
    with ``final=False``, a part of it, the next part going on from the same state.
    """

    def __init__(
        self,
        model: StepModel,
        batch_keys: int = 1024,
        max_delay_s: float = 0.2,
        clock: StageClock | None = None,
    ) -> None:
        self.model, self.batch_keys, self.max_delay_s = model, batch_keys, max_delay_s
        self.clock = clock or StageClock()
        self.open: dict[str, _StepPart] = {}
        self._due: dict[int, _StepPart] = {}  # parts with keys waiting (or closing), by id
        self._waiting = 0
        self._waiting_since: float | None = None
        self.windows_checked = 0

    def push(self, session: str, key: int, line: int | None = None) -> list[AnyAlert | PartResult]:
        part = self.open.get(session)
        if part is None:
            zero = self.model.zero_state(1)[0]
            part = self.open[session] = _StepPart.starting(session, 0, zero, START, 0)
        part.waiting.append(key)
        part.lines.append(line)
        part.last_line = line
        self._wait(part)
        return self.flush() if self._waiting >= self.batch_keys else []

    def close(self, session: str, final: bool = True) -> list[AnyAlert | PartResult]:
        part = self.open.pop(session)
        part.closing, part.final = True, final
        if final and self.model.meta.end_marker:
            part.waiting.append(END)
            part.lines.append(part.last_line)
        self._wait(part)
        # The next part starts from the state this one ends in: it is needed now.
        return self.flush() if self._waiting >= self.batch_keys or not final else []

    def drop(self, session: str) -> None:
        self.open.pop(session, None)

    def due(self, now: float) -> bool:
        waiting = self._waiting_since
        return waiting is not None and now - waiting >= self.max_delay_s

    def carry(self, session: str) -> dict:
        """Where an open session's current part starts, for a checkpoint: the state and key
        it starts from (its own lines are read again from the checkpoint's offset)."""
        part = self.open[session]
        return {
            "part": part.part,
            "position": part.start,
            "last": part.start_last,
            "state": part.start_state.tolist(),
        }

    def resume(self, session: str, state: dict) -> None:
        carried = np.asarray(state["state"], dtype=np.float32)
        self.open[session] = _StepPart.starting(
            session, state["part"], carried, state["last"], state["position"]
        )

    def _wait(self, part: _StepPart) -> None:
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
        self._due[id(part)] = part
        self._waiting += 1

    def flush(self) -> list[AnyAlert | PartResult]:
        """Check every waiting key now; alerts, then the results of parts now complete."""
        with self.clock.stage(DECISIONS):
            return self._flush()

    def _flush(self) -> list[AnyAlert | PartResult]:
        parts = list(self._due.values())
        self._due, self._waiting, self._waiting_since = {}, 0, None
        sending = [p for p in parts if p.waiting]
        found: list[AnyAlert | PartResult] = []
        if sending:
            lengths = np.array([len(p.waiting) + 1 for p in sending], dtype=np.int64)
            keys = np.full((len(sending), int(lengths.max())), END, dtype=np.int64)
            for i, p in enumerate(sending):
                keys[i, 0] = p.last
                keys[i, 1 : lengths[i]] = p.waiting
            state = np.stack([p.state for p in sending])
            with self.clock.stage(TRITON):
                scores = self.model.score(keys, lengths, state)
            self.windows_checked += int(lengths.sum() - len(sending))
            for row, col in zip(*np.nonzero(scores.anomalous), strict=True):
                alert = self._alert(sending[row], scores, int(row), int(col), keys)
                sending[row].alerts.append(alert)
                found.append(alert)
            for i, p in enumerate(sending):
                # A copy: a view would keep the whole answer alive while the session is open.
                p.state, p.last = scores.state[i].copy(), int(keys[i, lengths[i] - 1])
                ended = p.final and self.model.meta.end_marker
                real = p.waiting[:-1] if ended else p.waiting
                p.keys += real
                p.checked += len(p.waiting)
                p.position += len(real)
                p.waiting, p.lines = [], []
        for p in parts:
            if p.closing:
                found.append(
                    PartResult(p.session, p.part, p.keys, p.checked, p.alerts, start=p.start)
                )
                if not p.final:
                    # The next part goes on from where this one stopped.
                    self.open[p.session] = _StepPart.starting(
                        p.session, p.part + 1, p.state, p.last, p.position
                    )
        return found

    def _alert(
        self, part: _StepPart, scores: StepScores, row: int, col: int, keys: np.ndarray
    ) -> KeyAlert:
        vocab = self.model.meta.vocabulary
        key = int(keys[row, col + 1])
        return KeyAlert(
            session=part.session,
            position=part.position + col,
            line=part.lines[col],
            reason=key_reason(key),
            actual=key_ref(vocab, key),
            rank=int(scores.rank[row, col]),
            expected=tuple(
                key_ref(vocab, int(k), round(float(p), 4))
                for k, p in zip(scores.top_keys[row, col], scores.top_probs[row, col], strict=True)
            ),
            model=DEEPLOG_STEPS.name,
            model_version=self.model.meta.version,
        )


def served_step_meta(triton: TritonClient, version: int) -> StepModelMeta:
    """One deeplog_steps version's metadata, as the server hands it out."""
    return StepModelMeta.from_json(version, triton.version_meta(DEEPLOG_STEPS.name, version))


def open_step_model(
    triton: TritonClient, version: int | None = None, load: bool = True
) -> StepModel:
    """Ask the server to load deeplog_steps and bind to a ready version (the newest if none
    is named); every request names it."""
    chosen = triton.bind_version(DEEPLOG_STEPS.name, version, load)
    return StepModel(triton, served_step_meta(triton, chosen))
