"""DeepLog's log-key check through Triton: a key is abnormal if it is unknown or not among the
g likeliest next keys; a session is abnormal if any of its keys (or its end) is.

Each answer is judged with the (h, g) of the version that answered, whose vocabulary must be the
one the requests were built with (``KeyModel``), so keys are never read with another version's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from client.alerts import AnyAlert, Check, KeyAlert, key_reason, key_ref, workflow_place
from client.served_versions import ServedVersions
from client.stage_clock import DECISIONS, TRITON, StageClock
from client.triton_client import TritonClient
from export.contract.metas import KeyModelMeta
from export.contract.specs import DEEPLOG_KEYS
from export.contract.vocab import END, START, UNKNOWN
from export.contract.windows import WindowStream, session_windows, windows_of_sessions


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
    the version that answered (its metadata asked of the server), so a retrained version takes
    over without a restart and no request is sent to a version being unloaded. A version whose
    vocabulary or h differs would mean other keys: that answer is refused.
    """

    def __init__(
        self,
        triton: TritonClient,
        meta: KeyModelMeta,
        max_batch: int = 4096,
        pinned: bool = True,
    ) -> None:
        self.triton = triton
        self.meta = meta
        self.max_batch = min(max_batch, DEEPLOG_KEYS.max_batch_size)
        self.pinned = pinned
        self.versions = ServedVersions(
            DEEPLOG_KEYS.name,
            meta,
            lambda version: served_key_meta(triton, version),
            takes_keys_of,
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
        g = self.meta.top_g

        def output_bytes(rows: int) -> dict[str, int]:
            return {"RANK": rows * 8, "TOP_KEYS": rows * g * 8, "TOP_PROBS": rows * g * 4}

        results = self.triton.infer_parts(
            DEEPLOG_KEYS.name,
            {"WINDOWS": windows.astype(np.int64), "NEXT_KEY": next_keys[:, None]},
            DEEPLOG_KEYS.output_names,
            self.meta.version if self.pinned else None,
            self.max_batch,
            # Shared memory needs the answer's size: known where the version (its g) is.
            output_bytes if self.triton.shared is not None and self.pinned else None,
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

    def worst_ranks(self, sessions: Sequence[Sequence[int]]) -> np.ndarray:
        """Per complete key session, the highest rank any of its keys (or its end) got, an
        unknown key counting as the vocabulary's size: abnormal at g iff worst >= g (as
        ``StepModel.worst_ranks`` answers for the stepwise model)."""
        h, end = self.meta.window, self.meta.end_marker
        windows, keys = windows_of_sessions(sessions, h, end)
        rank = np.where(keys == UNKNOWN, self.meta.vocabulary.size, self.score(windows, keys).rank)
        owners = np.repeat(np.arange(len(sessions)), [len(s) + end for s in sessions])
        worst = np.zeros(len(sessions), dtype=np.int64)
        np.maximum.at(worst, owners, rank)
        return worst


def takes_keys_of(bound: KeyModelMeta, meta: KeyModelMeta) -> bool:
    """A version judges windows built for ``bound``: same h and end marker, and its vocabulary
    is bound's or bound's grown by new templates (every old key the same id)."""
    return (
        meta.window == bound.window
        and meta.end_marker == bound.end_marker
        and meta.vocabulary.extends(bound.vocabulary)
    )


def key_alert(meta: KeyModelMeta, step: Step, scores: Scores, i: int) -> KeyAlert:
    """The alert for row ``i`` of ``scores``, which judged ``step``."""
    vocab = meta.vocabulary
    return KeyAlert(
        session=step.session,
        position=step.position,
        line=step.line,
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
        workflow=workflow_place(
            vocab, meta.workflow, step.window[-1] if step.window else START, step.key
        ),
    )


@dataclass(frozen=True)
class PartResult:
    """A closed session part, every check of it answered: what its verdict is made of."""

    session: str
    part: int
    keys: list[int]  # its keys, what feedback on its alerts retrains on
    checked: int  # keys judged, the end included where the model learnt ends
    alerts: list[AnyAlert]  # its log-key (and diagnosis) alerts
    diagnosis: str | None = None
    start: int = 0  # position in the session of the part's first key

    @property
    def abnormal(self) -> bool:
        return any(a.check is Check.LOG_KEY for a in self.alerts)


@dataclass(slots=True)
class _KeyPart:
    """One open part of a session on the streaming path: its windows and what they found."""

    session: str
    part: int
    stream: WindowStream
    # Where the part starts: the h keys before its first key, and that key's position.
    context: list[int] = field(default_factory=list)
    start: int = 0
    keys: list[int] = field(default_factory=list)
    last_line: int | None = None
    alerts: list[AnyAlert] = field(default_factory=list)
    pending: int = 0  # steps sent for scoring, not answered yet
    checked: int = 0


class StreamingDetector:
    """Checks each key as its line arrives, windows of many sessions batched into one request.

    A batch is sent when it holds ``batch_windows`` windows or its oldest window has waited
    ``max_delay_s`` (``due``), so a key is judged within that delay however slow the log is.
    ``close`` ends a session, or (``final=False``) a part of it that the session continues
    from; its ``PartResult`` comes with the answer to its last window.
    """

    def __init__(
        self,
        model: KeyModel,
        batch_windows: int = 1024,
        max_delay_s: float = 0.2,
        clock: StageClock | None = None,
    ) -> None:
        self.model, self.batch_windows, self.max_delay_s = model, batch_windows, max_delay_s
        self.clock = clock or StageClock()
        self.open: dict[str, _KeyPart] = {}
        self._steps: list[Step] = []
        self._step_parts: list[_KeyPart] = []
        self._closing: list[_KeyPart] = []
        self._waiting_since: float | None = None
        self.windows_checked = 0

    def push(self, session: str, key: int, line: int | None = None) -> list[AnyAlert | PartResult]:
        part = self.open.get(session)
        if part is None:
            part = self.open[session] = _KeyPart(session, 0, WindowStream(self.model.meta.window))
        window, position = part.stream.push(key)
        part.keys.append(key)
        part.last_line = line
        self._add(part, Step(session, position, window, key, line))
        return self.flush() if len(self._steps) >= self.batch_windows else []

    def close(self, session: str, final: bool = True) -> list[AnyAlert | PartResult]:
        """The session is over (its end is checked, if the model learnt session ends), or with
        ``final=False`` one part of it is: the next keys continue its windows."""
        part = self.open.pop(session)
        if final and self.model.meta.end_marker:
            window, position = part.stream.close()
            self._add(part, Step(session, position, window, END, part.last_line))
        if not final:
            stream = part.stream
            self.open[session] = _KeyPart(
                session, part.part + 1, stream, stream.last_keys, stream.position
            )
        self._closing.append(part)
        return self.flush() if len(self._steps) >= self.batch_windows else []

    def drop(self, session: str) -> None:
        """Forget an open part that has no keys (its session ended right after a part)."""
        self.open.pop(session, None)

    def due(self, now: float) -> bool:
        """Whether the oldest waiting window has waited ``max_delay_s`` (``now``: monotonic)."""
        waiting = self._waiting_since
        return (waiting is not None and now - waiting >= self.max_delay_s) or (
            bool(self._closing) and not self._steps
        )

    def carry(self, session: str) -> dict:
        """Where an open session's current part starts (the h keys before it, its position),
        for a checkpoint: its own lines are read again from the checkpoint's offset."""
        part = self.open[session]
        return {"part": part.part, "context": part.context, "position": part.start}

    def resume(self, session: str, state: dict) -> None:
        """Continue ``session`` from a checkpoint's ``carry``."""
        h = self.model.meta.window
        stream = WindowStream(h, state["context"], state["position"])
        self.open[session] = _KeyPart(
            session, state["part"], stream, state["context"], state["position"]
        )

    def _add(self, part: _KeyPart, step: Step) -> None:
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
        part.pending += 1
        self._steps.append(step)
        self._step_parts.append(part)

    def flush(self) -> list[AnyAlert | PartResult]:
        """Check every waiting window now; alerts, then the results of parts now complete."""
        with self.clock.stage(DECISIONS):
            return self._flush()

    def _flush(self) -> list[AnyAlert | PartResult]:
        steps, parts = self._steps, self._step_parts
        self._steps, self._step_parts, self._waiting_since = [], [], None
        found: list[AnyAlert | PartResult] = []
        if steps:
            windows = np.array([s.window for s in steps], dtype=np.int64)
            keys = np.array([s.key for s in steps], dtype=np.int64)
            with self.clock.stage(TRITON):
                scores = self.model.score(windows, keys)
            self.windows_checked += len(steps)
            for part in parts:
                part.pending -= 1
                part.checked += 1
            for i in np.flatnonzero(scores.anomalous):
                # Named in the vocabulary of the version that answered: a grown one names
                # keys the bound version never had.
                meta = self.model.meta_of(int(scores.version[i]))
                alert = key_alert(meta, steps[i], scores, i)
                parts[i].alerts.append(alert)
                found.append(alert)
        done = [p for p in self._closing if p.pending == 0]
        self._closing = [p for p in self._closing if p.pending > 0]
        found += [
            PartResult(p.session, p.part, p.keys, p.checked, p.alerts, start=p.start) for p in done
        ]
        return found


def served_key_meta(triton: TritonClient, version: int) -> KeyModelMeta:
    """One deeplog_keys version's metadata, as the server hands it out."""
    return KeyModelMeta.from_json(version, triton.version_meta(DEEPLOG_KEYS.name, version))


def open_key_model(triton: TritonClient, version: int | None = None, load: bool = True) -> KeyModel:
    """Ask the server to load deeplog_keys, then bind to a ready version and its metadata.

    A named ``version`` pins every request to it; without one, the model starts from the newest
    ready version and follows the server to newer ones (a retrain swapping one in).
    """
    chosen = triton.bind_version(DEEPLOG_KEYS.name, version, load)
    return KeyModel(triton, served_key_meta(triton, chosen), pinned=version is not None)
