"""The client's default path: one ``log_anomaly`` request per finished session returns
DeepLog's verdict on every key and ASGNet's diagnosis of the whole session.

A session's lines are collected as they arrive; when it closes, its key windows (DeepLog), its
text and key-count vector (ASGNet) go in one request. Key alerts are the same as the
streaming DeepLog path's; a session ASGNet classes as anything but normal raises a diagnosis
alert listing the most similar labelled past units from the version's FAISS index.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from client.alerts import Alert, DiagnosisAlert, SimilarUnit
from client.detection import KeyModel, Scores, Step, key_alert
from client.stage_clock import DECISIONS, TRITON, StageClock
from client.triton_client import TritonClient
from export.asgnet import NORMAL
from export.log_tokenizer import unit_text
from export.publish_asgnet import SIMILAR_INDEX, SIMILAR_UNITS, AsgnetMeta
from export.repository import VersionMismatch
from export.specs import ASGNET_GNET, ASGNET_SNET, DEEPLOG_KEYS, LOG_ANOMALY
from export.vnet import count_vectors
from export.vocab import END, FIRST_KEY, UNKNOWN
from export.windows import session_windows


class SimilarUnits:
    """The labelled training units of one ASGNet version, searchable by S-Net embedding."""

    def __init__(self, index: faiss.Index, rows: list[dict]) -> None:
        if index.ntotal != len(rows):
            raise ValueError(f"index holds {index.ntotal} vectors for {len(rows)} units")
        self.index, self.rows = index, rows

    @classmethod
    def load(cls, repository: Path, version: int) -> SimilarUnits:
        folder = repository / ASGNET_SNET.name / str(version)
        index = faiss.read_index(str(folder / SIMILAR_INDEX))
        return cls(index, json.loads((folder / SIMILAR_UNITS).read_text()))

    def search(self, features: np.ndarray, k: int) -> list[tuple[SimilarUnit, ...]]:
        """The k nearest units of each row of ``features`` [n, d], nearest first."""
        k = min(k, self.index.ntotal)
        if k == 0:
            return [() for _ in features]
        distances, rows = self.index.search(np.ascontiguousarray(features, np.float32), k)
        return [
            tuple(
                SimilarUnit(
                    self.rows[r]["unit"],
                    self.rows[r]["label"],
                    float(d),
                    self.rows[r]["occurrences"],
                )
                for d, r in zip(dist, idx, strict=True)
                if r >= 0
            )
            for dist, idx in zip(distances, rows, strict=True)
        ]


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

    def __init__(
        self,
        triton: TritonClient,
        keys: KeyModel,
        meta: AsgnetMeta,
        similar: SimilarUnits,
        repository: Path,
        k: int = 3,
    ) -> None:
        self.triton, self.keys, self.meta, self.similar, self.k = triton, keys, meta, similar, k
        self.repository = repository
        self.key_meta = keys.meta  # the deeplog_keys version the ensemble runs: follow_server
        # Key ids of the key model -> key ids of ASGNet's count vector, matched by template.
        own = {t: FIRST_KEY + i for i, t in enumerate(meta.vocabulary.templates)}
        vocab = keys.meta.vocabulary
        self._count_key = {k: own.get(vocab.template(k), UNKNOWN) for k in range(vocab.size)}

    def follow_server(self) -> tuple[int, int]:
        """Move to the newest versions the server has ready, which the ensemble's steps run:
        deeplog_keys (its g judges the ranks; its keys must be the client's) and the ASGNet
        release (its classes, and its similar-incident index). Returns the two versions."""
        served = self.triton.ready_versions_of([DEEPLOG_KEYS.name, ASGNET_GNET.name])
        keys, ready = served[DEEPLOG_KEYS.name], served[ASGNET_GNET.name]
        if not keys:
            raise VersionMismatch(f"{DEEPLOG_KEYS.name} has no ready version")
        if self.keys.pinned and keys[-1] != self.keys.meta.version:
            raise VersionMismatch(
                f"{LOG_ANOMALY.name} runs the newest {DEEPLOG_KEYS.name}, v{keys[-1]}; this "
                f"client is pinned to v{self.keys.meta.version} (use --no-asgnet to check with "
                "a pinned version alone)"
            )
        self.key_meta = self.keys.meta_of(keys[-1])
        if ready and ready[-1] != self.meta.version:
            meta = AsgnetMeta.load(self.repository, ready[-1])
            if (meta.classes, meta.vocabulary) != (self.meta.classes, self.meta.vocabulary):
                raise VersionMismatch(
                    f"{ASGNET_GNET.name} v{meta.version} is served, with other classes or keys "
                    f"than v{self.meta.version}'s this client was started with: restart the client"
                )
            self.meta, self.similar = meta, SimilarUnits.load(self.repository, meta.version)
        return self.key_meta.version, self.meta.version

    def asgnet_keys(self, session_keys: list[int]) -> list[int]:
        """A session's keys (the key model's ids) as ids of ASGNet's vocabulary: how a
        diagnosis alert's session is stored for feedback."""
        return [self._count_key.get(k, UNKNOWN) for k in session_keys]

    def request(self, session_keys: list[int]) -> dict[str, np.ndarray]:
        meta = self.keys.meta
        windows, next_keys = session_windows(session_keys, meta.window, meta.end_marker)
        vocab = meta.vocabulary
        text = unit_text([vocab.template(k) for k in session_keys])
        # S-Net reads only its first max_length tokens; a long session's full text would only
        # cost bandwidth, and past 1 MiB the tokenizer model refuses it.
        text = text.encode("utf-8")[:TEXT_BYTES].decode("utf-8", errors="ignore")
        counts = count_vectors([self.asgnet_keys(session_keys)], self.meta.vocabulary.size)
        return {
            "WINDOWS": windows,
            "NEXT_KEY": next_keys[:, None],
            "TEXT": np.array([[text.encode("utf-8")]], dtype=object),
            "COUNTS": counts,
        }

    def check(self, session_keys: list[int]) -> SessionResult:
        inputs = self.request(session_keys)
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
            self.similar.search(out["FEATURES"], self.k)[0],
        )
        return SessionResult(scores, diagnosis)


@dataclass
class SessionDetector:
    """Collects each session's keys; on close, checks it in one ``log_anomaly`` request.

    Same interface as ``StreamingDetector``; closed sessions are checked ``concurrency`` at a
    time, so the server's dynamic batcher can group their S-Net work.
    """

    model: LogAnomalyModel
    concurrency: int = 4
    chunk_sessions: int = 256  # sessions checked between two looks at the served versions
    sessions: dict[str, list[tuple[int, int | None]]] = field(default_factory=dict)
    results: dict[str, SessionResult] = field(default_factory=dict)
    windows_checked: int = 0
    clock: StageClock = field(default_factory=StageClock)

    def push(self, session: str, key: int, line: int | None = None) -> list:
        self.sessions.setdefault(session, []).append((key, line))
        return []

    def close_all(self) -> list[Alert | DiagnosisAlert]:
        finished, self.sessions = self.sessions, {}
        names = list(finished)
        alerts: list[Alert | DiagnosisAlert] = []
        for i in range(0, len(names), self.chunk_sessions):
            chunk = names[i : i + self.chunk_sessions]
            # Building the requests happens in the same threads: counted as Triton here.
            with self.clock.stage(TRITON):
                results = self._check_served(chunk, finished)
            with self.clock.stage(DECISIONS):
                for name, result in zip(chunk, results, strict=True):
                    self.results[name] = result
                    self.windows_checked += len(result.scores.rank)
                    alerts += self._alerts(name, finished[name], result)
        return alerts

    def _check_served(
        self, names: list[str], finished: dict[str, list[tuple[int, int | None]]]
    ) -> list[SessionResult]:
        """Check sessions between two looks at the served versions. The ensemble runs the
        newest ready ones and does not say which; if they changed while the requests ran (a
        retrain swapped one in), some answers may be the other version's: check them again."""
        for _ in range(3):
            served = self.model.follow_server()
            with ThreadPoolExecutor(self.concurrency) as pool:
                results = list(
                    pool.map(lambda s: self.model.check([k for k, _ in finished[s]]), names)
                )
            if self.model.follow_server() == served:
                return results
        raise VersionMismatch(
            f"the versions {LOG_ANOMALY.name} runs changed during each of 3 tries: retry later"
        )

    def _alerts(
        self, session: str, keys: list[tuple[int, int | None]], result: SessionResult
    ) -> list[Alert | DiagnosisAlert]:
        meta = self.model.keys.meta
        steps = [Step(session, i, (), key, line) for i, (key, line) in enumerate(keys)]
        if meta.end_marker:
            steps.append(Step(session, len(keys), (), END))
        alerts: list[Alert | DiagnosisAlert] = [
            key_alert(meta, steps[i], result.scores, i)
            for i in np.flatnonzero(result.scores.anomalous)
        ]
        d = result.diagnosis
        if d.label != NORMAL:
            alerts.append(
                DiagnosisAlert(
                    session=session,
                    check="diagnosis",
                    label=d.label,
                    probability=d.probability,
                    probabilities=d.probabilities,
                    similar=d.similar,
                    lines=tuple(line for _, line in keys[:10] if line is not None),
                    model=LOG_ANOMALY.name,
                    model_version=self.model.meta.version,
                )
            )
        return alerts

    def verdicts(self) -> dict[str, bool]:
        """Session id -> abnormal by DeepLog's key check."""
        return {s: bool(r.scores.anomalous.any()) for s, r in self.results.items()}

    def diagnoses(self) -> dict[str, str]:
        return {s: r.diagnosis.label for s, r in self.results.items()}


def open_log_anomaly(
    triton: TritonClient, keys: KeyModel, repository: Path, k: int = 3, load: bool = True
) -> LogAnomalyModel:
    """Load the ensemble (Triton loads its composing models) and bind to the newest ASGNet."""
    if load:
        triton.load_model(LOG_ANOMALY.name)
    version = triton.bind_version(ASGNET_GNET.name, None, load=False)
    model = LogAnomalyModel(
        triton,
        keys,
        AsgnetMeta.load(repository, version),
        SimilarUnits.load(repository, version),
        repository,
        k,
    )
    model.follow_server()  # a key model pinned to a version the ensemble does not run: refused
    return model
