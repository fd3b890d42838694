"""Parameter vectors: for each log entry, [time since the previous entry of its session, then
the numeric parameter values of its key]. Which of a key's parameters are numeric is learnt from
training data (the schema) and travels with the model version.

Two choices keep the Gaussian bounds honest on real logs:
- the time gap enters as log1p(seconds): gaps are heavy-tailed (an exponential's tail beyond
  mean + 2.58 sd is 2.8%, not 1%), and a slowdown is a ratio, which the log makes a shift;
- a position that holds 2 to 4 distinct numbers in training (a status code, a responder index)
  is a category, not a measurement, and is left out: a regression of codes predicts values
  between them. One that always holds the same number (a block size) is kept: any change from
  it is a deviation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

GAP = "gap_s"
WILDCARD = "<*>"
MIN_DISTINCT_MEASUREMENT = 5  # fewer distinct values (but more than one): a category
_PUNCTUATION = "\"'()[],;"


def numeric_value(token: str) -> float | None:
    """The number a parameter token holds ("0.2477829", "200,", "1893"), or None."""
    text = token.strip(_PUNCTUATION)
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class ParamSchema:
    """Per key: which parameter positions are numeric, and what each vector dimension means."""

    positions: dict[int, tuple[int, ...]]  # key id -> indexes into ParsedLine.params
    names: dict[int, tuple[str, ...]]  # key id -> dimension names (gap first)
    # The log clock's tick: a gap measured with 1 s timestamps is off by up to 1 s, so no
    # bound on the gap is tighter than one tick (the model cannot see below it either).
    clock_resolution: float = 0.0
    # key -> {dimension: value} for values that never changed in training (a block size): they
    # are checked for equality, not against a bound fitted to the model's rounding noise.
    constants: dict[int, dict[int, float]] = field(default_factory=dict)

    def to_json(self) -> dict:
        keys = {
            str(k): {"positions": list(self.positions[k]), "names": list(self.names[k])}
            for k in self.positions
        }
        constants = {str(k): {str(d): v for d, v in c.items()} for k, c in self.constants.items()}
        return {"clock_resolution": self.clock_resolution, "keys": keys, "constants": constants}

    @classmethod
    def from_json(cls, data: dict) -> ParamSchema:
        keys = data["keys"]
        return cls(
            positions={int(k): tuple(v["positions"]) for k, v in keys.items()},
            names={int(k): tuple(v["names"]) for k, v in keys.items()},
            clock_resolution=float(data["clock_resolution"]),
            constants={
                int(k): {int(d): float(v) for d, v in c.items()}
                for k, c in data["constants"].items()
            },
        )


def _is_measurement(distinct: int) -> bool:
    return distinct == 1 or distinct >= MIN_DISTINCT_MEASUREMENT


@dataclass
class SchemaLearner:
    """Watches training entries; a position is a measurement if it held a number every time and
    was either constant or took at least MIN_DISTINCT_MEASUREMENT values."""

    numeric: dict[int, list[bool]] = field(default_factory=dict)
    values: dict[int, list[set[float]]] = field(default_factory=dict)  # capped distinct values
    words: dict[int, list[str]] = field(default_factory=dict)  # key -> template tokens

    def observe(self, key: int, template: str, params: tuple[str, ...]) -> None:
        names = self.words.get(key)
        if names is None or len(names) != len(params):
            names = self.words[key] = slot_names(template)
        # A number glued to a word ("blk_<*>", "node-<*>") names something; it measures nothing.
        numbers = [
            None if n is None else numeric_value(p) for p, n in zip(params, names, strict=False)
        ]
        seen = self.numeric.get(key)
        if seen is None or len(seen) != len(numbers):
            self.numeric[key] = [v is not None for v in numbers]
            self.values[key] = [set() for _ in numbers]
        else:
            self.numeric[key] = [a and v is not None for a, v in zip(seen, numbers, strict=True)]
        for distinct, value in zip(self.values[key], numbers, strict=True):
            if value is not None and len(distinct) < MIN_DISTINCT_MEASUREMENT:
                distinct.add(value)

    def schema(self, clock_resolution: float) -> ParamSchema:
        positions = {
            k: tuple(
                i for i, ok in enumerate(flags) if ok and _is_measurement(len(self.values[k][i]))
            )
            for k, flags in self.numeric.items()
        }
        constants = {
            k: {
                1 + j: next(iter(self.values[k][i]))
                for j, i in enumerate(p)
                if len(self.values[k][i]) == 1
            }
            for k, p in positions.items()
        }
        return ParamSchema(
            positions,
            {k: (GAP, *(self._name(k, i) for i in p)) for k, p in positions.items()},
            clock_resolution,
            {k: c for k, c in constants.items() if c},
        )

    def _name(self, key: int, position: int) -> str:
        return f"{self.words[key][position] or 'param'}#{position}"


def slot_names(template: str) -> list[str | None]:
    """Per wildcard of a template: the label of its value (the word before it, "time: <*>" ->
    "time", or its key, "size=<*>" -> "size"; "" if none), or None when the wildcard is part
    of a name: letters in its token besides a key ("blk_<*>", "node-<*>")."""
    names: list[str | None] = []
    previous = ""
    for token in template.split():
        count = token.count(WILDCARD)
        if count:
            key = token[: token.index(WILDCARD)]
            cut = max(key.rfind("="), key.rfind(":"))
            if cut >= 0:
                label, value = key[:cut], token[cut + 1 :]
            else:
                label, value = ("" if WILDCARD in previous else previous), token
            glued = any(c.isalpha() for c in value.replace(WILDCARD, ""))
            names += [None if glued else label.strip(":=,(\"'")] * count
        previous = token
    return names


@dataclass
class VectorBuilder:
    """Turns (key, params, time, session) into the key's vector, tracking each session's clock."""

    schema: ParamSchema
    last_seen: dict[str, float] = field(default_factory=dict)
    not_numeric: int = 0  # entries whose numeric position held something else (not checked)
    # Whether the last vector was its session's first here: its gap (0) measures nothing, so
    # detection leaves that dimension unjudged (a stream joined midway starts with such entries).
    first_in_session: bool = False

    def vector(
        self, key: int, params: tuple[str, ...], when: float | None, session: str
    ) -> np.ndarray | None:
        """[log1p(gap s), values...]; None when the key has no schema or a numeric position
        holds no number. ``when`` None (a format without timestamps): the gap is always 0."""
        previous = self.last_seen.get(session)
        self.last_seen[session] = when
        self.first_in_session = previous is None
        positions = self.schema.positions.get(key)
        if positions is None:
            return None
        values = [numeric_value(params[i]) if i < len(params) else None for i in positions]
        if any(v is None for v in values):
            self.not_numeric += 1
            return None
        gap = 0.0 if previous is None or when is None else max(when - previous, 0.0)
        return np.array([math.log1p(gap), *values], dtype=np.float64)
