"""DeepLog's log-key check through Triton: a key is abnormal if it is unknown or not among the
g likeliest next keys; a session is abnormal if any of its keys (or its end) is.

Each answer is judged with the (h, g) of the version that answered, whose vocabulary must be the
one the requests were built with (``KeyModel``), so keys are never read with another version's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from client.alerts import Alert, key_reason, key_ref
from client.served_versions import ServedVersions
from client.stage_clock import DECISIONS, TRITON, StageClock
from client.triton_client import TritonClient
from export.publish import KeyModelMeta
from export.specs import DEEPLOG_KEYS
from export.vocab import END, UNKNOWN
from export.windows import WindowStream, session_windows


@dataclass(frozen=True)
class Step:
    """One key to check: the window before it, in its session."""

    session: str
    position: int
    window: tuple[int, ...]
    key: int
    line: int | None = None


@dataclass(frozen=True)
class Scores:
    """The model's answer for a batch of windows."""

    rank: np.ndarray  # [n]
    top_keys: np.ndarray  # [n, g]
    top_probs: np.ndarray  # [n, g]
    anomalous: np.ndarray  # [n] bool
    version: np.ndarray  # [n] the model version that judged each row


class KeyModel:
    """deeplog_keys served by Triton.

    Pinned (``pinned=True``), every request names ``meta.version``. Otherwise the model follows
    the server: requests go to the newest ready version, and each answer is judged with the g of
    the version that answered (read from its folder in ``repository``), so a retrained version
    takes over without a restart and no request is sent to a version being unloaded. A version
    whose vocabulary or h differs would mean other keys: that answer is refused.
    """

    def __init__(
        self,
        triton: TritonClient,
        meta: KeyModelMeta,
        max_batch: int = 4096,
        repository: Path | None = None,
        pinned: bool = True,
    ) -> None:
        if not pinned and repository is None:
            raise ValueError("a model that follows the server needs the repository to read metas")
        self.triton = triton
        self.meta = meta
        self.max_batch = min(max_batch, DEEPLOG_KEYS.max_batch_size)
        self.repository = repository
        self.pinned = pinned
        self.versions = ServedVersions(
            DEEPLOG_KEYS.name,
            meta,
            lambda version: KeyModelMeta.load(repository, version),
            lambda m: (m.vocabulary, m.window, m.end_marker),
            "vocabulary or h",
        )

    def meta_of(self, version: int) -> KeyModelMeta:
        """The metadata of the version that answered, checked to speak the same keys."""
        return self.versions.meta_of(version)

    def score(self, windows: np.ndarray, next_keys: np.ndarray) -> Scores:
        """Score many windows, in requests of up to ``max_batch`` windows each."""
        if windows.ndim != 2 or windows.shape[1] != self.meta.window:
            raise ValueError(f"windows must be [n, {self.meta.window}], got {windows.shape}")
        next_keys = next_keys.astype(np.int64)
        results = self.triton.infer_parts(
            DEEPLOG_KEYS.name,
            {"WINDOWS": windows.astype(np.int64), "NEXT_KEY": next_keys[:, None]},
            DEEPLOG_KEYS.output_names,
            self.meta.version if self.pinned else None,
            self.max_batch,
        )
        parts = []
        for i, result in zip(range(0, len(windows), self.max_batch), results, strict=True):
            meta = self.meta_of(int(result.model_version))
            out = result.outputs
            rank = out["RANK"][:, 0]
            keys = next_keys[i : i + self.max_batch]
            anomalous = (rank >= meta.top_g) | (keys == UNKNOWN)
            version = np.full(len(rank), meta.version, dtype=np.int64)
            parts.append((rank, out["TOP_KEYS"], out["TOP_PROBS"], anomalous, version))
        if not parts:
            g = self.meta.top_g
            return Scores(
                np.zeros(0, np.int64),
                np.zeros((0, g), np.int64),
                np.zeros((0, g), np.float32),
                np.zeros(0, bool),
                np.zeros(0, np.int64),
            )
        # Versions may differ in g, so the top-k columns are padded to the widest.
        width = max(p[1].shape[1] for p in parts)

        def pad(a: np.ndarray, fill: float) -> np.ndarray:
            return np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=fill)

        return Scores(
            np.concatenate([p[0] for p in parts]),
            np.concatenate([pad(p[1], -1) for p in parts]),
            np.concatenate([pad(p[2], 0.0) for p in parts]),
            np.concatenate([p[3] for p in parts]),
            np.concatenate([p[4] for p in parts]),
        )

    def sessions_anomalous(self, sessions: Sequence[Sequence[int]]) -> np.ndarray:
        """Verdict per complete key session (True = abnormal), all windows in large requests."""
        h, end = self.meta.window, self.meta.end_marker
        parts = [session_windows(s, h, end) for s in sessions]
        lengths = np.array([len(p[1]) for p in parts])
        if len(parts) == 0:
            return np.zeros(0, bool)
        windows = np.concatenate([p[0] for p in parts])
        keys = np.concatenate([p[1] for p in parts])
        flags = self.score(windows, keys).anomalous
        owners = np.repeat(np.arange(len(parts)), lengths)
        return np.bincount(owners, weights=flags, minlength=len(parts)) > 0


def key_alert(meta: KeyModelMeta, step: Step, scores: Scores, i: int) -> Alert:
    """The alert for row ``i`` of ``scores``, which judged ``step``."""
    vocab = meta.vocabulary
    return Alert(
        session=step.session,
        position=step.position,
        line=step.line,
        check="log_key",
        reason=key_reason(step.key),
        actual=key_ref(vocab, step.key),
        rank=int(scores.rank[i]),
        expected=tuple(
            key_ref(vocab, int(k), round(float(p), 4))
            for k, p in zip(scores.top_keys[i], scores.top_probs[i], strict=True)
            if k >= 0
        ),
        model=DEEPLOG_KEYS.name,
        model_version=int(scores.version[i]),
    )


@dataclass
class SessionState:
    stream: WindowStream
    anomalies: int = 0
    first_anomaly: int | None = None


@dataclass
class StreamingDetector:
    """Checks each key as its line arrives, batching windows across sessions into one request."""

    model: KeyModel
    batch_windows: int = 1024
    sessions: dict[str, SessionState] = field(default_factory=dict)
    closed: dict[str, SessionState] = field(default_factory=dict)
    pending: list[Step] = field(default_factory=list)
    windows_checked: int = 0
    clock: StageClock = field(default_factory=StageClock)

    def push(self, session: str, key: int, line: int | None = None) -> list[Alert]:
        state = self.sessions.get(session)
        if state is None:
            state = self.sessions[session] = SessionState(WindowStream(self.model.meta.window))
        window, position = state.stream.push(key)
        self.pending.append(Step(session, position, window, key, line))
        return self.flush() if len(self.pending) >= self.batch_windows else []

    def close(self, session: str) -> list[Alert]:
        """The session is over: check its end (if the model learnt session ends)."""
        state = self.sessions.pop(session)
        self.closed[session] = state
        if self.model.meta.end_marker:
            window, position = state.stream.close()
            self.pending.append(Step(session, position, window, END))
        return self.flush() if len(self.pending) >= self.batch_windows else []

    def close_all(self) -> list[Alert]:
        alerts = []
        for session in list(self.sessions):
            alerts += self.close(session)
        return alerts + self.flush()

    def flush(self) -> list[Alert]:
        with self.clock.stage(DECISIONS):
            return self._flush()

    def _flush(self) -> list[Alert]:
        steps, self.pending = self.pending, []
        if not steps:
            return []
        windows = np.array([s.window for s in steps], dtype=np.int64)
        keys = np.array([s.key for s in steps], dtype=np.int64)
        with self.clock.stage(TRITON):
            scores = self.model.score(windows, keys)
        self.windows_checked += len(steps)
        alerts = []
        for i in np.flatnonzero(scores.anomalous):
            step = steps[i]
            state = self.sessions.get(step.session) or self.closed[step.session]
            state.anomalies += 1
            if state.first_anomaly is None:
                state.first_anomaly = step.position
            alerts.append(key_alert(self.model.meta, step, scores, i))
        return alerts

    def verdicts(self) -> dict[str, bool]:
        """Session id -> abnormal, for every session seen so far."""
        states = {**self.closed, **self.sessions}
        return {s: st.anomalies > 0 for s, st in states.items()}


def open_key_model(
    triton: TritonClient, repository: Path, version: int | None = None, load: bool = True
) -> KeyModel:
    """Ask the server to load deeplog_keys, then bind to a ready version and its metadata.

    A named ``version`` pins every request to it; without one, the model starts from the newest
    ready version and follows the server to newer ones (a retrain swapping one in).
    """
    chosen = triton.bind_version(DEEPLOG_KEYS.name, version, load)
    meta = KeyModelMeta.load(repository, chosen)
    return KeyModel(triton, meta, repository=repository, pinned=version is not None)
