"""What detection emits: alerts (one kind per check) and a verdict for each checked session.

Each alert says which check fired, where, and what the model expected instead; its JSON form
carries everything, with a stable id (the same alert from the same model version always gets
the same id, so a replay after a restart is recognised and not emitted twice). Stored alerts
are read back into these same types (``alert_from_json``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any

from client.sessions import CloseCause
from export.contract.vocab import END, UNKNOWN, KeyVocabulary
from export.contract.workflow import Workflow


class Check(str, Enum):
    """Which detector fired."""

    LOG_KEY = "log_key"  # DeepLog's key model: unknown key, or not among the g likeliest
    PARAMETER_VALUE = "parameter_value"  # DeepLog's parameter-value model: a value out of bounds
    DIAGNOSIS = "diagnosis"  # ASGNet: the session is of an anomaly class


class KeyReason(str, Enum):
    UNKNOWN_KEY = "unknown_key"  # a template never seen in training
    NOT_IN_TOP_G = "not_in_top_g"  # the key model did not expect it


@dataclass(frozen=True)
class KeyRef:
    key: int
    name: str
    template: str
    probability: float | None = None


@dataclass(frozen=True)
class WorkflowPlace:
    """Where a flagged step left its task's workflow (``export/contract/workflow.py``): the
    state the session was in (the key before, ``<start>`` before the first), the steps the
    workflow goes on to from there (``probability``: each one's share in normal sessions), and
    the step that came instead."""

    task: int
    last_normal: KeyRef
    allowed: tuple[KeyRef, ...]
    happened: KeyRef
    # The workflow has this step here too: it was the history before it that made it unlikely.
    known_transition: bool

    def line(self, shown: int = 3) -> str:
        allowed = ", ".join(f"{r.name} {r.probability:.2f}" for r in self.allowed[:shown])
        more = ", ..." if len(self.allowed) > shown else ""
        came = (
            "a step the workflow has here, unlikely after this history"
            if self.known_transition
            else "a step the workflow never takes here"
        )
        return (
            f"task {self.task}: after {self.last_normal.name} '{self.last_normal.template}' the "
            f"workflow goes on to {allowed or 'nothing'}{more}; {self.happened.name} came ({came})"
        )


@dataclass(frozen=True)
class KeyAlert:
    session: str
    position: int  # 0-based position of the key in its session (== session length for END)
    # Raw line number in the stream: of the key, or for the session's end its last line (so
    # the ends of two sessions of one id, e.g. one that came back after it went idle, differ).
    line: int | None
    reason: KeyReason
    actual: KeyRef
    rank: int  # how many keys the model found likelier than the actual one (0 = its top pick)
    expected: tuple[KeyRef, ...]
    model: str
    model_version: int
    # An unknown template raises one alert per session (part) and template: how often it came
    # (1 as the alert is first emitted; the stored alert has the count at the session's end),
    # and where in the stored session keys (what a template learnt as normal retrains on).
    # Neither is part of the alert's id.
    repeats: int = 1
    key_indexes: tuple[int, ...] = ()
    workflow: WorkflowPlace | None = None  # None: the version has no workflow
    check: Check = field(default=Check.LOG_KEY, init=False)

    def named(self, actual: KeyRef) -> KeyAlert:
        """The alert with its actual key named anew (an unknown line's mined template)."""
        place = self.workflow and replace(self.workflow, happened=actual)
        return replace(self, actual=actual, workflow=place)

    def facts(self) -> AlertFacts:
        where = f"line {self.line}" if self.actual.key != END else f"end, after line {self.line}"
        if self.repeats > 1:
            where += f", {self.repeats} times"
        reason = self.reason.value
        if self.reason is KeyReason.UNKNOWN_KEY:
            reason += f" {self.actual.name}"  # what `feedback normal-template` takes
        return AlertFacts(reason, self.actual.template, f"key #{self.position}, {where}")

    def headline(self, shown: int = 3) -> str:
        """One line for a terminal; the JSON form carries everything."""
        where = f"line {self.line}" if self.actual.key != END else f"end, after line {self.line}"
        expected = ", ".join(
            f"{ref.name} {ref.probability:.2f}" if ref.probability is not None else ref.name
            for ref in self.expected[:shown]
        )
        return (
            f"{self.session} key #{self.position} ({where}): {self.reason.value} "
            f"{self.actual.name} '{self.actual.template}' ({self.rank} keys likelier); "
            f"expected {expected}, ..."
        )


@dataclass(frozen=True)
class AlertFacts:
    """What ``feedback list`` shows of an alert besides its id and session."""

    reason: str
    template: str
    where: str


@dataclass(frozen=True)
class ParamAlert:
    session: str
    line: int | None
    key: KeyRef
    dimension: str  # which value deviated, e.g. "gap_s" or "time#5"
    value: float  # what the entry had (seconds for the gap)
    predicted: float  # what the model expected
    accepted_low: float  # the version's Gaussian bound for this key and dimension, as a range
    accepted_high: float
    model: str
    model_version: int
    check: Check = field(default=Check.PARAMETER_VALUE, init=False)

    def facts(self) -> AlertFacts:
        reason = (
            f"{self.dimension}={self.value:.6g} outside "
            f"[{self.accepted_low:.6g}, {self.accepted_high:.6g}]"
        )
        return AlertFacts(reason, self.key.template, f"line {self.line}")

    def headline(self) -> str:
        where = f"line {self.line}" if self.line is not None else "?"
        return (
            f"{self.session} ({where}): {self.key.name} '{self.key.template}' {self.dimension}="
            f"{self.value:.6g}, predicted {self.predicted:.6g}, accepted "
            f"[{self.accepted_low:.6g}, {self.accepted_high:.6g}]"
        )


@dataclass(frozen=True)
class SimilarUnit:
    """A labelled training unit close to the diagnosed one in S-Net's embedding space."""

    unit: str
    label: str
    distance: float  # squared L2 between the embeddings
    occurrences: int  # how many identical training rows it stands for


@dataclass(frozen=True)
class DiagnosisAlert:
    """ASGNet judged the whole session abnormal, and says of which kind."""

    session: str
    label: str  # the likeliest class (never "normal" in an alert)
    probability: float
    probabilities: dict[str, float]  # every class of the version, "normal" first
    similar: tuple[SimilarUnit, ...]  # the k most similar past units, nearest first
    lines: tuple[int, ...]  # the session's raw line numbers (first few)
    model: str
    model_version: int  # the ASGNet version whose classes and index were used
    check: Check = field(default=Check.DIAGNOSIS, init=False)

    def facts(self) -> AlertFacts:
        more = ", ..." if len(self.lines) > 3 else ""
        where = f"lines {', '.join(map(str, self.lines[:3]))}{more}"
        return AlertFacts(f"{self.label} (p={self.probability:.2f})", "", where)

    def headline(self) -> str:
        nearest = ", ".join(f"{s.label} ({s.unit}, d={s.distance:.3g})" for s in self.similar)
        return (
            f"{self.session}: diagnosed {self.label} (p={self.probability:.2f}); "
            f"similar past units: {nearest or 'none indexed'}"
        )


AnyAlert = KeyAlert | ParamAlert | DiagnosisAlert


@dataclass(frozen=True)
class SessionVerdict:
    """A checked session (or part of one): emitted once, when its last check is answered."""

    session: str
    part: int  # 0, or which part of a session checked in parts
    first_line: int
    last_line: int
    keys: int  # keys judged, the session's end included where the model learnt ends
    abnormal: bool  # DeepLog's key check flagged a key (or the end) of it
    key_alerts: int
    diagnosis: str | None  # ASGNet's class, on the log_anomaly path
    closed_by: CloseCause

    @property
    def id(self) -> str:
        text = json.dumps([self.session, self.part, self.first_line])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]

    def record(self) -> dict[str, Any]:
        return {"id": self.id, **asdict(self)}


# Filled in as a session goes on, or derived from the version's workflow: not in the id (the
# same alert keeps its id whether or not its version carries a workflow).
_COUNTED = ("repeats", "key_indexes", "workflow")


def alert_id(alert: AnyAlert) -> str:
    """A short stable id: the same alert (same content, same model version) gets the same id."""
    fields = {k: v for k, v in asdict(alert).items() if k not in _COUNTED}
    text = json.dumps(fields, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def alert_record(alert: AnyAlert) -> dict[str, Any]:
    """The alert as one JSON line carries it: its id first, then every field."""
    return {"id": alert_id(alert), **asdict(alert)}


def alert_from_json(data: dict[str, Any]) -> AnyAlert:
    """An alert as ``alert_record`` wrote it (the id, if present, is not part of it)."""
    fields = {k: v for k, v in data.items() if k not in ("id", "check")}
    check = Check(data["check"])
    if check is Check.LOG_KEY:
        return KeyAlert(
            **{
                **fields,
                "reason": KeyReason(fields["reason"]),
                "actual": KeyRef(**fields["actual"]),
                "expected": tuple(KeyRef(**e) for e in fields["expected"]),
                "key_indexes": tuple(fields.get("key_indexes", ())),
                "workflow": _place_from_json(fields.get("workflow")),
            }
        )
    if check is Check.PARAMETER_VALUE:
        return ParamAlert(**{**fields, "key": KeyRef(**fields["key"])})
    return DiagnosisAlert(
        **{
            **fields,
            "similar": tuple(SimilarUnit(**s) for s in fields["similar"]),
            "lines": tuple(fields["lines"]),
        }
    )


def _place_from_json(data: dict[str, Any] | None) -> WorkflowPlace | None:
    if data is None:
        return None
    return WorkflowPlace(
        data["task"],
        KeyRef(**data["last_normal"]),
        tuple(KeyRef(**r) for r in data["allowed"]),
        KeyRef(**data["happened"]),
        data["known_transition"],
    )


def workflow_place(
    vocabulary: KeyVocabulary, workflow: Workflow | None, previous: int, happened: int
) -> WorkflowPlace | None:
    """Where the step ``previous -> happened`` left the workflow, in the version's names."""
    divergence = workflow.divergence(previous, happened) if workflow is not None else None
    if divergence is None:
        return None
    return WorkflowPlace(
        divergence.task,
        key_ref(vocabulary, previous),
        tuple(key_ref(vocabulary, e.target, e.share) for e in divergence.allowed),
        key_ref(vocabulary, happened),
        divergence.known_transition,
    )


def key_ref(vocabulary: KeyVocabulary, key: int, probability: float | None = None) -> KeyRef:
    return KeyRef(key, vocabulary.name(key), vocabulary.template(key), probability)


def key_reason(key: int) -> KeyReason:
    return KeyReason.UNKNOWN_KEY if key == UNKNOWN else KeyReason.NOT_IN_TOP_G
