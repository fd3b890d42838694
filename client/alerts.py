"""Alerts as JSON lines: what happened, where, and what the model expected instead."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from export.vocab import UNKNOWN, KeyVocabulary


@dataclass(frozen=True)
class KeyRef:
    key: int
    name: str
    template: str
    probability: float | None = None


@dataclass(frozen=True)
class Alert:
    session: str
    position: int  # 0-based position of the key in its session (== session length for END)
    line: int | None  # raw line number in the stream, None for the session's end
    check: str  # which detector fired: "log_key"
    reason: str  # "unknown_key" or "not_in_top_g"
    actual: KeyRef
    rank: int  # how many keys the model found likelier than the actual one (0 = its top pick)
    expected: tuple[KeyRef, ...]
    model: str
    model_version: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    def headline(self, shown: int = 3) -> str:
        """One line for a terminal; the JSON form carries everything."""
        where = f"line {self.line}" if self.line is not None else "session end"
        expected = ", ".join(
            f"{ref.name} {ref.probability:.2f}" if ref.probability is not None else ref.name
            for ref in self.expected[:shown]
        )
        return (
            f"{self.session} key #{self.position} ({where}): {self.reason} "
            f"{self.actual.name} '{self.actual.template}' ({self.rank} keys likelier); "
            f"expected {expected}, ..."
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
    check: str  # "diagnosis"
    label: str  # the likeliest class (never "normal" in an alert)
    probability: float
    probabilities: dict[str, float]
    similar: tuple[SimilarUnit, ...]  # the k most similar past units, nearest first
    lines: tuple[int, ...]  # the session's raw line numbers (first few)
    model: str
    model_version: int  # the ASGNet version whose classes and index were used

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    def headline(self) -> str:
        nearest = ", ".join(f"{s.label} ({s.unit}, d={s.distance:.3g})" for s in self.similar)
        return (
            f"{self.session}: diagnosed {self.label} (p={self.probability:.2f}); "
            f"similar past units: {nearest or 'none indexed'}"
        )


def key_ref(vocabulary: KeyVocabulary, key: int, probability: float | None = None) -> KeyRef:
    return KeyRef(key, vocabulary.name(key), vocabulary.template(key), probability)


def key_reason(key: int) -> str:
    return "unknown_key" if key == UNKNOWN else "not_in_top_g"
