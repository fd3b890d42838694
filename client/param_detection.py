"""DeepLog's parameter-value check through Triton: each entry's vector against the prediction
from the previous h vectors of its key; abnormal when a dimension's error is outside the
version's Gaussian bound for that key and dimension.

Histories are per key within a session (the stream, where a format has no sessions).
Requests carry many entries; each answer is judged with the bounds of the version that
answered (see ``ParamModel``).
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from client.alerts import ParamAlert, key_ref
from client.formats import LogFormat
from client.param_vectors import ParamSchema, VectorBuilder
from client.parsing import ParsedLine
from client.served_versions import ServedVersions
from client.triton_client import TritonClient
from export.contract.metas import ParamModelMeta
from export.contract.specs import DEEPLOG_PARAMS
from export.contract.vocab import FIRST_KEY

LIMIT = 1e6  # normalised units


def _inputs(meta: ParamModelMeta) -> tuple:
    """What two versions must share to judge the same requests."""
    return (
        meta.window,
        meta.width,
        meta.normaliser.mean.tobytes(),
        meta.normaliser.std.tobytes(),
        json.dumps(meta.schema, sort_keys=True),
        meta.vocabulary,
    )


class ParamModel:
    """A parameter-value model served by Triton.

    Pinned (``pinned=True``), every request names ``meta.version``. Otherwise requests go to the
    newest ready version and each answer is judged with the bounds of the version that answered
    (its metadata asked of the server): a recalibrated version takes over without a restart, and no
    request goes to a version being unloaded. Histories are normalised with ``meta``'s
    normaliser, so a version with another normaliser, schema or vocabulary is refused.
    """

    def __init__(
        self,
        triton: TritonClient,
        meta: ParamModelMeta,
        max_batch: int = 2048,
        pinned: bool = True,
    ) -> None:
        self.triton = triton
        self.meta = meta
        self.schema = ParamSchema.from_json(meta.schema)
        self.max_batch = max_batch
        self.pinned = pinned
        self.versions = ServedVersions(
            meta.model,
            meta,
            lambda version: served_param_meta(triton, meta.model, version),
            lambda bound, m: _inputs(bound) == _inputs(m),
            "normaliser, schema or vocabulary",
        )

    def predict(self, history: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[n, h, width] normalised histories and [n] keys -> [n, width] predicted vectors and
        [n] the version that predicted each."""
        if len(keys) == 0:
            return np.zeros((0, self.meta.width), np.float32), np.zeros(0, np.int64)
        parts = self.triton.infer_parts(
            self.meta.model,
            {"HISTORY": history.astype(np.float32), "KEY": keys[:, None].astype(np.int64)},
            ["PREDICTED"],
            self.meta.version if self.pinned else None,
            self.max_batch,
        )
        predicted = np.concatenate([p.outputs["PREDICTED"] for p in parts])
        versions = np.concatenate(
            [np.full(len(p.outputs["PREDICTED"]), int(p.model_version)) for p in parts]
        )
        return predicted, versions

    def meta_of(self, version: int) -> ParamModelMeta:
        """The metadata (bounds) of the version that answered."""
        return self.versions.meta_of(version)


@dataclass(frozen=True)
class _Entry:
    session: str
    line: int | None
    key: int
    vector: np.ndarray  # [log1p(gap), values...]
    history: np.ndarray  # [h, width] normalised
    judge_gap: bool  # False for a session's first entry: there is no gap to judge


class ParamDetector:
    """Checks entries as they arrive, batching them across keys and sessions.

    A batch is sent when it holds ``batch_entries`` entries or its oldest has waited
    ``max_delay_s`` (``due``). A session's histories are dropped when it closes (``forget``),
    so memory follows the open sessions, not every session ever seen.
    """

    def __init__(self, model: ParamModel, batch_entries: int = 512, max_delay_s: float = 0.2):
        self.model, self.batch_entries, self.max_delay_s = model, batch_entries, max_delay_s
        self.builder = VectorBuilder(model.schema)
        # session -> key -> the key's last h normalised vectors in the session
        self.histories: dict[str, dict[int, deque]] = {}
        self._parts: dict[str, dict] = {}  # session -> its state where its current part began
        self.pending: list[_Entry] = []
        self._waiting_since: float | None = None
        self.checked = 0

    def check_line(self, parsed: ParsedLine, log_format: LogFormat) -> list[ParamAlert]:
        """One line from a frozen parser built on this version's templates; a line of an unknown
        template has no learnt parameters and is not checked here."""
        if parsed.template_id < 0:
            return []
        when = log_format.clock(parsed.header)
        sessions = log_format.sessions(parsed, when)
        return self.push(
            sessions[0] if sessions else "",
            FIRST_KEY + parsed.template_id,
            parsed.params,
            when if log_format.clock.timed else None,
            parsed.line_no,
        )

    def push(
        self, session: str, key: int, params: tuple[str, ...], when: float | None, line: int | None
    ) -> list[ParamAlert]:
        vector = self.builder.vector(key, params, when, session)
        if vector is None or key not in self.model.meta.thresholds:
            return []
        meta = self.model.meta
        normalised = np.zeros(meta.width, np.float32)
        # A value beyond a million standard deviations is as anomalous as any further one,
        # and stays finite in float32 (the model refuses NaN and infinity).
        normalised[: len(vector)] = np.clip(meta.normaliser.apply(key, vector), -LIMIT, LIMIT)
        keys = self.histories.get(session)
        if keys is None:
            keys = self.histories[session] = {}
        past = keys.get(key)
        if past is None:
            past = keys[key] = deque(maxlen=meta.window)
        history = np.zeros((meta.window, meta.width), np.float32)
        if past:
            history[meta.window - len(past) :] = np.stack(past)
        past.append(normalised)
        entry = _Entry(session, line, key, vector, history, not self.builder.first_in_session)
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
        self.pending.append(entry)
        return self.flush() if len(self.pending) >= self.batch_entries else []

    def due(self, now: float) -> bool:
        waiting = self._waiting_since
        return waiting is not None and now - waiting >= self.max_delay_s

    def forget(self, session: str) -> None:
        """The session closed: its histories and clock go (a waiting entry keeps its copy)."""
        self.histories.pop(session, None)
        self.builder.last_seen.pop(session, None)
        self._parts.pop(session, None)

    def new_part(self, session: str) -> None:
        """The session goes on in a new part: remember where it stood, for ``carry``."""
        self._parts[session] = self._state(session)

    def carry(self, session: str) -> dict:
        """Where the session's current part began (its histories and clock), for a checkpoint:
        the part's own lines are read again from the checkpoint's offset."""
        return self._parts.get(session) or self._state(session)

    def resume(self, session: str, state: dict) -> None:
        if state.get("last_seen") is not None:
            self.builder.last_seen[session] = state["last_seen"]
        window = self.model.meta.window
        self.histories[session] = {
            int(key): deque((np.asarray(v, np.float32) for v in vectors), maxlen=window)
            for key, vectors in state["histories"].items()
        }
        self._parts[session] = state

    def _state(self, session: str) -> dict:
        return {
            "last_seen": self.builder.last_seen.get(session),
            "histories": {
                str(key): [v.tolist() for v in past]
                for key, past in self.histories.get(session, {}).items()
            },
        }

    def flush(self) -> list[ParamAlert]:
        entries, self.pending, self._waiting_since = self.pending, [], None
        if not entries:
            return []
        keys = np.array([e.key for e in entries], dtype=np.int64)
        predicted, versions = self.model.predict(np.stack([e.history for e in entries]), keys)
        self.checked += len(entries)
        alerts = []
        for entry, guess, version in zip(entries, predicted, versions, strict=True):
            alert = self._judge(entry, guess, self.model.meta_of(int(version)))
            if alert is not None:
                alerts.append(alert)
        return alerts

    def _judge(self, entry: _Entry, guess: np.ndarray, meta: ParamModelMeta) -> ParamAlert | None:
        """Accepted range per dimension: predicted +/- the bound of ``meta``, the version that
        predicted, in raw units. The gap is modelled as log1p(seconds), so its range is
        asymmetric in seconds, widened by one clock tick."""
        d = len(entry.vector)
        normal = meta.normaliser
        centre = normal.invert(entry.key, guess[:d].astype(np.float64))
        std = normal.std[entry.key, :d].astype(np.float64)
        low = centre - np.asarray(meta.thresholds[entry.key], np.float64) * std
        high = centre + np.asarray(meta.thresholds_above[entry.key], np.float64) * std
        value = entry.vector.copy()
        tick = self.model.schema.clock_resolution
        value[0], centre[0] = np.expm1(value[0]), np.expm1(centre[0])
        low[0], high[0] = max(np.expm1(low[0]) - tick, 0.0), np.expm1(high[0]) + tick
        for dim, constant in self.model.schema.constants.get(entry.key, {}).items():
            centre[dim] = low[dim] = high[dim] = constant
        width = np.maximum(high - low, 1e-9 * np.maximum(np.abs(value), 1.0))
        with np.errstate(invalid="ignore"):
            excess = np.maximum(low - value, value - high) / width
        # Unjudged: dimensions without a bound (too few validation windows), a first gap.
        excess[~np.isfinite(width) | np.isnan(excess)] = -np.inf
        if not entry.judge_gap:
            excess[0] = -np.inf
        worst = int(np.argmax(excess))
        if excess[worst] <= 0.0:
            return None
        return ParamAlert(
            session=entry.session,
            line=entry.line,
            key=key_ref(meta.vocabulary, entry.key),
            dimension=self.model.schema.names[entry.key][worst],
            value=round(float(value[worst]), 6),
            predicted=round(float(centre[worst]), 6),
            accepted_low=round(float(low[worst]), 6),
            accepted_high=round(float(high[worst]), 6),
            model=meta.model,
            model_version=meta.version,
        )


def normalised_deviation(
    meta: ParamModelMeta, schema: ParamSchema, alert: ParamAlert
) -> tuple[int, int, float] | None:
    """(key, dimension, how far the value was above (+) or below (-) the prediction in the
    units of the version's bounds) of a parameter-value alert, as ``_judge`` measured it;
    None for a dimension that was constant in training (its bound is that constant)."""
    key = alert.key.key
    dim = schema.names[key].index(alert.dimension)
    if dim in schema.constants.get(key, {}):
        return None
    value, predicted = float(alert.value), float(alert.predicted)
    if dim == 0:  # the gap is modelled as log1p(seconds)
        value, predicted = float(np.log1p(value)), float(np.log1p(predicted))
    return key, dim, (value - predicted) / float(meta.normaliser.std[key, dim])


def served_param_meta(triton: TritonClient, model: str, version: int) -> ParamModelMeta:
    """One parameter-value model version's metadata, as the server hands it out."""
    return ParamModelMeta.from_json(model, version, triton.version_meta(model, version))


def open_param_model(
    triton: TritonClient,
    model: str = DEEPLOG_PARAMS.name,
    version: int | None = None,
    load: bool = True,
) -> ParamModel:
    """Ask the server to load a parameter-value model and bind to a ready version and its meta.

    A named ``version`` pins every request to it; without one, the model starts from the newest
    ready version and follows the server to newer ones (a recalibration swapping one in).
    """
    chosen = triton.bind_version(model, version, load)
    meta = served_param_meta(triton, model, chosen)
    return ParamModel(triton, meta, pinned=version is not None)
