"""The client's default path: one ``log_anomaly`` request per finished session returns
DeepLog's verdict on every key and ASGNet's diagnosis of the whole session.

A session's lines are collected as they arrive; when it closes, its key windows (DeepLog), its
text and key-count vector (ASGNet) go in one request. Key alerts are the same as the
streaming DeepLog path's; a session ASGNet classes as anything but normal raises a diagnosis
alert naming the most similar labelled past units, which the ensemble's last step
(``asgnet_similar``) finds on the server.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from client.alerts import AnyAlert, DiagnosisAlert, SimilarUnit
from client.detection import KeyModel, PartResult, Scores, Step, key_alert
from client.stage_clock import DECISIONS, TRITON, StageClock
from client.triton_client import TritonClient
from export.contract.errors import VersionMismatch
from export.contract.metas import AsgnetMeta
from export.contract.specs import ASGNET_GNET, ASGNET_SIMILAR, DEEPLOG_KEYS, LOG_ANOMALY
from export.contract.units import NORMAL, count_vectors, unit_text
from export.contract.vocab import END, FIRST_KEY, START, UNKNOWN
from export.contract.windows import session_windows


def served_asgnet_meta(
    triton: TritonClient, version: int, similar_version: int | None = None
) -> AsgnetMeta:
    """One ASGNet release's classes, count-vector keys and index rows, from the server (the
    rows of ``similar_version`` of the search, where it is not yet the release's own)."""
    return AsgnetMeta.from_json(
        version,
        triton.version_meta(ASGNET_GNET.name, version),
        triton.version_meta(ASGNET_SIMILAR.name, similar_version or version),
    )


def similar_units(
    meta: AsgnetMeta, rows: np.ndarray, distances: np.ndarray
) -> tuple[SimilarUnit, ...]:
    """The index rows the server found nearest, as the units they stand for."""
    return tuple(
        SimilarUnit(
            meta.indexed[r].unit, meta.indexed[r].label, float(d), meta.indexed[r].occurrences
        )
        for r, d in zip(rows, distances, strict=True)
        if 0 <= r < len(meta.indexed)
    )


@dataclass(frozen=True)
class Diagnosis:
    label: str
    probability: float
    probabilities: dict[str, float]
    similar: tuple[SimilarUnit, ...]


@dataclass(frozen=True)
class SessionResult:
    scores: Scores  # DeepLog, one row per key of the session (and its end)
    diagnosis: Diagnosis


TEXT_BYTES = 64 * 1024  # far more than any S-Net max_length of tokens


class LogAnomalyModel:
    """The ``log_anomaly`` ensemble, read with the key model's and ASGNet's metadata."""

    def __init__(self, triton: TritonClient, keys: KeyModel, meta: AsgnetMeta) -> None:
        self.triton, self.keys, self.meta = triton, keys, meta
        self.key_meta = keys.meta  # the deeplog_keys version the ensemble runs: follow_server
        # Key ids of the key model -> key ids of ASGNet's count vector, matched by template.
        own = {t: FIRST_KEY + i for i, t in enumerate(meta.vocabulary.templates)}
        vocab = keys.meta.vocabulary
        self._count_key = {k: own.get(vocab.template(k), UNKNOWN) for k in range(vocab.size)}

    def follow_server(self) -> tuple[int, int, int]:
        """Move to the newest versions the server has ready, which the ensemble's steps run:
        deeplog_keys (its g judges the ranks; its keys must be the client's), the ASGNet
        release (its classes) and the similar-units search (who its index rows are; a release
        is swapped in model by model, so for a moment it may be the last release's). Returns
        the three versions."""
        served = self.triton.ready_versions_of(
            [DEEPLOG_KEYS.name, ASGNET_GNET.name, ASGNET_SIMILAR.name]
        )
        keys, ready = served[DEEPLOG_KEYS.name], served[ASGNET_GNET.name]
        similar = served[ASGNET_SIMILAR.name]
        if not keys:
            raise VersionMismatch(f"{DEEPLOG_KEYS.name} has no ready version")
        if self.keys.pinned and keys[-1] != self.keys.meta.version:
            raise VersionMismatch(
                f"{LOG_ANOMALY.name} runs the newest {DEEPLOG_KEYS.name}, v{keys[-1]}; this "
                f"client is pinned to v{self.keys.meta.version} (use --no-asgnet to check with "
                "a pinned version alone)"
            )
        self.key_meta = self.keys.meta_of(keys[-1])
        newest = (ready[-1], similar[-1]) if ready and similar else None
        if newest and newest != (self.meta.version, self.meta.indexed_version):
            meta = served_asgnet_meta(self.triton, *newest)
            if (meta.classes, meta.vocabulary) != (self.meta.classes, self.meta.vocabulary):
                raise VersionMismatch(
                    f"{ASGNET_GNET.name} v{meta.version} is served, with other classes or keys "
                    f"than v{self.meta.version}'s this client was started with: restart the client"
                )
            self.meta = meta
        return self.key_meta.version, self.meta.version, self.meta.indexed_version

    def asgnet_keys(self, session_keys: list[int]) -> list[int]:
        """A session's keys (the key model's ids) as ids of ASGNet's vocabulary: how a
        diagnosis alert's session is stored for feedback."""
        return [self._count_key.get(k, UNKNOWN) for k in session_keys]

    def request(
        self, keys: Sequence[int], context: Sequence[int] = (), final: bool = True
    ) -> dict[str, np.ndarray]:
        """One session's request; for a part of a session, ``context`` holds the h keys before
        it (its windows continue from them) and only the last part (``final``) has an end."""
        meta = self.keys.meta
        windows, next_keys = session_windows(
            [*context, *keys], meta.window, meta.end_marker and final
        )
        windows, next_keys = windows[len(context) :], next_keys[len(context) :]
        vocab = meta.vocabulary
        text = unit_text([vocab.template(k) for k in keys])
        # S-Net reads only its first max_length tokens; a long session's full text would only
        # cost bandwidth, and past 1 MiB the tokenizer model refuses it.
        text = text.encode("utf-8")[:TEXT_BYTES].decode("utf-8", errors="ignore")
        counts = count_vectors([self.asgnet_keys(keys)], self.meta.vocabulary.size)
        return {
            "WINDOWS": np.ascontiguousarray(windows),
            "NEXT_KEY": np.ascontiguousarray(next_keys[:, None]),
            "TEXT": np.array([[text.encode("utf-8")]], dtype=object),
            "COUNTS": counts,
        }

    def check(
        self, keys: Sequence[int], context: Sequence[int] = (), final: bool = True
    ) -> SessionResult:
        inputs = self.request(keys, context, final)
        # Inside the ensemble, a session's windows are one deeplog_keys batch: a longer session
        # sends its first windows with the text and scores the rest through deeplog_keys alone.
        limit = DEEPLOG_KEYS.max_batch_size
        head = {
            **inputs,
            "WINDOWS": inputs["WINDOWS"][:limit],
            "NEXT_KEY": inputs["NEXT_KEY"][:limit],
        }
        out = self.triton.infer(LOG_ANOMALY.name, head, LOG_ANOMALY.output_names).outputs
        probs = out["PROBS"][0]
        if len(probs) != len(self.meta.classes):
            raise VersionMismatch(
                f"{LOG_ANOMALY.name} answered {len(probs)} classes, {ASGNET_GNET.name} "
                f"v{self.meta.version} has {len(self.meta.classes)}: another version is served"
            )
        rank = out["RANK"][:, 0]
        next_keys = head["NEXT_KEY"][:, 0]
        # The ensemble does not say which deeplog_keys version answered: the one follow_server
        # found newest, which SessionDetector checks is still the newest after the requests.
        scores = Scores(
            rank,
            out["TOP_KEYS"],
            out["TOP_PROBS"],
            (rank >= self.key_meta.top_g) | (next_keys == UNKNOWN),
            np.full(len(rank), self.key_meta.version, dtype=np.int64),
        )
        if len(inputs["WINDOWS"]) > limit:
            rest = self.keys.score(inputs["WINDOWS"][limit:], inputs["NEXT_KEY"][limit:, 0])
            width = scores.top_keys.shape[1]
            scores = Scores(
                np.concatenate([scores.rank, rest.rank]),
                np.concatenate([scores.top_keys, rest.top_keys[:, :width]]),
                np.concatenate([scores.top_probs, rest.top_probs[:, :width]]),
                np.concatenate([scores.anomalous, rest.anomalous]),
                np.concatenate([scores.version, rest.version]),
            )
        best = int(np.argmax(probs))
        diagnosis = Diagnosis(
            self.meta.classes[best],
            float(probs[best]),
            {c: round(float(p), 4) for c, p in zip(self.meta.classes, probs, strict=True)},
            similar_units(self.meta, out["SIMILAR_UNITS"][0], out["SIMILAR_DISTANCES"][0]),
        )
        return SessionResult(scores, diagnosis)


@dataclass(slots=True)
class _SessionPart:
    """An open session (or part of one) on the log_anomaly path: its keys, kept until it
    closes and is checked in one request."""

    session: str
    part: int
    context: tuple[int, ...]  # the h keys before the part (none for a session's first part)
    start: int  # position of its first key in the session
    keys: list[int] = field(default_factory=list)
    lines: list[int | None] = field(default_factory=list)


class SessionDetector:
    """Collects each session's keys; on close, checks it in one ``log_anomaly`` request.

    Same interface as ``StreamingDetector``. Closed sessions wait until ``chunk_sessions`` of
    them have closed or the first has waited ``max_delay_s`` (``due``), then are checked
    ``concurrency`` at a time, so the server's dynamic batcher can group their S-Net work.
    """

    def __init__(
        self,
        model: LogAnomalyModel,
        concurrency: int = 4,
        chunk_sessions: int = 256,
        max_delay_s: float = 0.2,
        clock: StageClock | None = None,
    ) -> None:
        self.model, self.concurrency, self.chunk_sessions = model, concurrency, chunk_sessions
        self.max_delay_s = max_delay_s
        self.clock = clock or StageClock()
        self.open: dict[str, _SessionPart] = {}
        self._closed: list[tuple[_SessionPart, bool]] = []
        self._waiting_since: float | None = None
        self.windows_checked = 0

    def push(self, session: str, key: int, line: int | None = None) -> list:
        part = self.open.get(session)
        if part is None:
            part = self.open[session] = _SessionPart(session, 0, (), 0)
        part.keys.append(key)
        part.lines.append(line)
        return []

    def close(self, session: str, final: bool = True) -> list[AnyAlert | PartResult]:
        """The session (or with ``final=False`` one part of it) is over: it will be checked."""
        part = self.open.pop(session)
        if not final:
            context = (*part.context, *part.keys)[-self.model.keys.meta.window :]
            self.open[session] = _SessionPart(
                session, part.part + 1, context, part.start + len(part.keys)
            )
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
        self._closed.append((part, final))
        return self.flush() if len(self._closed) >= self.chunk_sessions else []

    def drop(self, session: str) -> None:
        """Forget an open part that has no keys (its session ended right after a part)."""
        self.open.pop(session, None)

    def due(self, now: float) -> bool:
        waiting = self._waiting_since
        return waiting is not None and now - waiting >= self.max_delay_s

    def carry(self, session: str) -> dict:
        """Where an open session's current part starts (the h keys before it, its position),
        for a checkpoint: its own lines are read again from the checkpoint's offset."""
        part = self.open[session]
        return {"part": part.part, "context": list(part.context), "position": part.start}

    def resume(self, session: str, state: dict) -> None:
        self.open[session] = _SessionPart(
            session, state["part"], tuple(state["context"]), state["position"]
        )

    def flush(self) -> list[AnyAlert | PartResult]:
        """Check every closed session now: their alerts, then their results."""
        closed, self._closed, self._waiting_since = self._closed, [], None
        found: list[AnyAlert | PartResult] = []
        for i in range(0, len(closed), self.chunk_sessions):
            chunk = closed[i : i + self.chunk_sessions]
            # Building the requests happens in the same threads: counted as Triton here.
            with self.clock.stage(TRITON):
                results = self._check_served(chunk)
            with self.clock.stage(DECISIONS):
                for (part, final), result in zip(chunk, results, strict=True):
                    self.windows_checked += len(result.scores.rank)
                    alerts = self._alerts(part, final, result)
                    found += alerts
                    found.append(
                        PartResult(
                            part.session,
                            part.part,
                            part.keys,
                            len(result.scores.rank),
                            alerts,
                            result.diagnosis.label,
                            part.start,
                        )
                    )
        return found

    def _check_served(self, parts: list[tuple[_SessionPart, bool]]) -> list[SessionResult]:
        """Check sessions between two looks at the served versions. The ensemble runs the
        newest ready ones and does not say which; if they changed while the requests ran (a
        retrain swapped one in), some answers may be the other version's: check them again."""
        for _ in range(3):
            served = self.model.follow_server()
            with ThreadPoolExecutor(self.concurrency) as pool:
                results = list(
                    pool.map(lambda pf: self.model.check(pf[0].keys, pf[0].context, pf[1]), parts)
                )
            if self.model.follow_server() == served:
                return results
        raise VersionMismatch(
            f"the versions {LOG_ANOMALY.name} runs changed during each of 3 tries: retry later"
        )

    def _alerts(self, part: _SessionPart, final: bool, result: SessionResult) -> list[AnyAlert]:
        meta = self.model.keys.meta
        # Each step's window is the key before it: all an alert needs to place it in the
        # workflow (the server built the full windows itself). A later part of a session
        # continues from the last key of the part before it.
        before = [part.context[-1] if part.context else START, *part.keys]
        steps = [
            Step(part.session, part.start + i, (before[i],), key, line)
            for i, (key, line) in enumerate(zip(part.keys, part.lines, strict=True))
        ]
        if meta.end_marker and final:
            last = (before[-1],)
            end = Step(part.session, part.start + len(part.keys), last, END, part.lines[-1])
            steps.append(end)
        alerts: list[AnyAlert] = [
            key_alert(meta, steps[i], result.scores, i)
            for i in np.flatnonzero(result.scores.anomalous)
        ]
        d = result.diagnosis
        if d.label != NORMAL:
            alerts.append(
                DiagnosisAlert(
                    session=part.session,
                    label=d.label,
                    probability=d.probability,
                    probabilities=d.probabilities,
                    similar=d.similar,
                    lines=tuple(line for line in part.lines[:10] if line is not None),
                    model=LOG_ANOMALY.name,
                    model_version=self.model.meta.version,
                )
            )
        return alerts


def open_log_anomaly(triton: TritonClient, keys: KeyModel, load: bool = True) -> LogAnomalyModel:
    """Load the ensemble (Triton loads its composing models) and bind to the newest ASGNet."""
    if load:
        triton.load_model(LOG_ANOMALY.name)
    version = triton.bind_version(ASGNET_GNET.name, None, load=False)
    model = LogAnomalyModel(triton, keys, served_asgnet_meta(triton, version))
    model.follow_server()  # a key model pinned to a version the ensemble does not run: refused
    return model
