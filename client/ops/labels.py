"""The user's labels for ASGNet: which sessions (or lines) are of which class.

A labels file is CSV with a header. Its first column names what is labelled: ``line`` or
``LineId`` (1-based line numbers of the log) for labels per line, anything else (``session``,
loghub's ``BlockId``, ...) for session ids; its second column is the class. ``normal``, ``-``
(loghub's BGL) and an empty cell mean normal, in any case; every other value is a class named
by the user. A session is of the class of its first labelled line that is not normal;
sessions the file does not name are normal.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from client.formats import LogFormat
from client.ops.errors import LabelsError, NotEnoughData
from client.parsing import LogParser
from export.contract.units import NORMAL

NORMAL_VALUES = frozenset({"normal", "-", ""})
LINE_COLUMNS = frozenset({"line", "lineid", "line_id"})
MIN_SESSIONS_PER_CLASS = 3  # distinct: two to learn from, one in the held-back check set


class Labelled(str, Enum):
    SESSION = "session"
    LINE = "line"


@dataclass(frozen=True)
class Labels:
    kind: Labelled
    values: dict[str, str]  # session id or line number (as text) -> class, normal left out


def read_labels(path: Path) -> Labels:
    try:
        with open(path, newline="", encoding="utf-8") as file:
            rows = list(csv.reader(file))
    except FileNotFoundError:
        raise LabelsError(f"no labels file {path}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise LabelsError(f"labels file {path} is not CSV text: {exc}") from None
    if not rows or len(rows[0]) < 2:
        raise LabelsError(
            f"labels file {path}: the first row must be a header of two columns, e.g. "
            "'BlockId,Label' or 'LineId,Label'"
        )
    kind = Labelled.LINE if rows[0][0].strip().lower() in LINE_COLUMNS else Labelled.SESSION
    values: dict[str, str] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) < 2:
            raise LabelsError(f"labels file {path}, row {number}: two columns expected: {row}")
        what, label = row[0].strip(), row[1].strip()
        if kind is Labelled.LINE and not what.isdigit():
            raise LabelsError(f"labels file {path}, row {number}: {what!r} is not a line number")
        if label.lower() not in NORMAL_VALUES:
            values[what] = label
    return Labels(kind, values)


def session_labels(labels: Labels, lines: Sequence[bytes], log_format: LogFormat) -> dict[str, str]:
    """Session id -> class for the sessions that are not normal."""
    if labels.kind is Labelled.SESSION:
        return dict(labels.values)
    parser = LogParser(log_format, learn=False)  # the header and sessions are what count
    found: dict[str, str] = {}
    for line_no, raw in enumerate(lines, start=1):
        label = labels.values.get(str(line_no))
        if label is None:
            continue
        parsed = parser.parse(raw, line_no)
        if parsed is None:
            continue
        try:
            when = log_format.clock(parsed.header)
        except (ValueError, KeyError, OverflowError):
            continue
        for session in log_format.sessions(parsed, when):
            found.setdefault(session, label)
    return found


def classes_of(labels: dict[str, str]) -> tuple[str, ...]:
    """Normal first (class 0 of every ASGNet model), then the user's classes by name."""
    return (NORMAL, *sorted(set(labels.values()) - {NORMAL}))


def require_classes(per_class: Counter, source: str) -> None:
    """Refuse labels ASGNet cannot learn from: a class with too few sessions, or none that is
    not normal."""
    shown = ", ".join(f"{name} {n}" for name, n in per_class.items())
    if len([c for c in per_class if c != NORMAL and per_class[c]]) == 0:
        raise NotEnoughData(
            f"{source}: every session is normal ({shown}): ASGNet needs at least one labelled "
            "anomaly class"
        )
    few = [c for c, n in per_class.items() if n < MIN_SESSIONS_PER_CLASS]
    if few:
        raise NotEnoughData(
            f"{source}: too few distinct sessions to learn from: {shown} (each class needs at "
            f"least {MIN_SESSIONS_PER_CLASS}; too few: {', '.join(few)})"
        )
