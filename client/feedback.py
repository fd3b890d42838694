"""Operator feedback on alerts, stored durably in SQLite (WAL).

``detect`` records every alert it raises with the session's keys (under the vocabulary of the
model version that raised it); an operator then marks an alert a false positive or confirms it
(for a diagnosis, with the right class). ``retrain`` reads the pending items and marks them used
by the version they went into.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from client.alerts import AnyAlert, Check, DiagnosisAlert, alert_from_json, alert_id

FALSE_POSITIVE, CONFIRMED = "false_positive", "confirmed"
VERDICTS = (FALSE_POSITIVE, CONFIRMED)

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    check_name TEXT NOT NULL,
    session TEXT NOT NULL,
    model TEXT NOT NULL,
    model_version INTEGER NOT NULL,
    alert TEXT NOT NULL,             -- the alert as printed, JSON
    session_keys TEXT NOT NULL,      -- the whole session's key ids, JSON
    vocabulary TEXT NOT NULL,        -- fingerprint of the vocabulary the keys are ids in
    raised_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL UNIQUE REFERENCES alerts(id),
    verdict TEXT NOT NULL CHECK (verdict IN ('false_positive', 'confirmed')),
    label TEXT,                      -- the right class, for a diagnosis
    given_at TEXT NOT NULL,
    used_in TEXT                     -- "deeplog_keys v7" once a retrain learnt it
);
"""


class FeedbackError(ValueError):
    """Feedback that cannot be taken: unknown alert, feedback given twice, a bad verdict."""


@dataclass(frozen=True)
class StoredAlert:
    id: str
    check: Check
    session: str
    model: str
    model_version: int
    alert: AnyAlert
    session_keys: list[int]
    vocabulary: str
    raised_at: str


@dataclass(frozen=True)
class Feedback:
    id: int
    alert: StoredAlert
    verdict: str
    label: str | None
    given_at: str
    used_in: str | None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class FeedbackStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a confirmed write survives a power cut
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(
        self, alerts: Sequence[AnyAlert], session_keys: dict[str, list[int]], vocabulary: str
    ) -> int:
        """Store alerts with their sessions' keys; an alert stored before is left as it was.
        Returns how many were new."""
        rows = [
            (
                alert_id(a),
                a.check.value,
                a.session,
                a.model,
                a.model_version,
                json.dumps(asdict(a), ensure_ascii=False),
                json.dumps(session_keys[a.session]),
                vocabulary,
                _now(),
            )
            for a in alerts
        ]
        with self._db:
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
            return self._db.total_changes - before

    def alert(self, alert_id: str) -> StoredAlert:
        row = self._db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if row is None:
            raise FeedbackError(f"no alert {alert_id!r} in {self.path}")
        return _stored_alert(row)

    def give(self, alert_id: str, verdict: str, label: str | None = None) -> Feedback:
        """Record the operator's verdict on one alert; each alert takes one verdict."""
        if verdict not in VERDICTS:
            raise FeedbackError(f"verdict must be one of {VERDICTS}, not {verdict!r}")
        alert = self.alert(alert_id)
        if label is not None:
            _check_label(alert, verdict, label)
        try:
            with self._db:
                cursor = self._db.execute(
                    "INSERT INTO feedback (alert_id, verdict, label, given_at) VALUES (?, ?, ?, ?)",
                    (alert_id, verdict, label, _now()),
                )
        except sqlite3.IntegrityError as exc:
            given = self._db.execute(
                "SELECT verdict, given_at FROM feedback WHERE alert_id = ?", (alert_id,)
            ).fetchone()
            raise FeedbackError(
                f"alert {alert_id} already has feedback ({given[0]} at {given[1]})"
            ) from exc
        return self._feedback(cursor.lastrowid)

    def pending(self, model: str | None = None) -> list[Feedback]:
        """Feedback no retrain has used yet, oldest first (of one model's alerts if named)."""
        sql = (
            "SELECT f.id FROM feedback f JOIN alerts a ON a.id = f.alert_id WHERE f.used_in IS NULL"
        )
        args: tuple = ()
        if model is not None:
            sql, args = sql + " AND a.model = ?", (model,)
        return [self._feedback(r[0]) for r in self._db.execute(sql + " ORDER BY f.id", args)]

    def confirmed(self, check: Check) -> list[Feedback]:
        """Every confirmed alert of one check, used or not: the known anomalies."""
        rows = self._db.execute(
            "SELECT f.id FROM feedback f JOIN alerts a ON a.id = f.alert_id "
            "WHERE f.verdict = ? AND a.check_name = ? ORDER BY f.id",
            (CONFIRMED, check.value),
        )
        return [self._feedback(r[0]) for r in rows]

    def mark_used(self, feedback_ids: Sequence[int], used_in: str) -> None:
        with self._db:
            self._db.executemany(
                "UPDATE feedback SET used_in = ? WHERE id = ?", [(used_in, i) for i in feedback_ids]
            )

    def alerts(self, limit: int = 50) -> list[tuple[StoredAlert, str | None]]:
        """The newest alerts with their verdict (None: no feedback yet)."""
        rows = self._db.execute(
            "SELECT a.*, f.verdict FROM alerts a LEFT JOIN feedback f ON f.alert_id = a.id "
            "ORDER BY a.raised_at DESC, a.id LIMIT ?",
            (limit,),
        ).fetchall()
        return [(_stored_alert(r[:9]), r[9]) for r in rows]

    def _feedback(self, feedback_id: int) -> Feedback:
        row = self._db.execute(
            "SELECT id, alert_id, verdict, label, given_at, used_in FROM feedback WHERE id = ?",
            (feedback_id,),
        ).fetchone()
        return Feedback(row[0], self.alert(row[1]), row[2], row[3], row[4], row[5])


def _check_label(alert: StoredAlert, verdict: str, label: str) -> None:
    """A class is given to a confirmed diagnosis only, and must be one its model knows."""
    if not isinstance(alert.alert, DiagnosisAlert):
        raise FeedbackError(
            f"alert {alert.id} is a {alert.check} alert: only a diagnosis takes a class"
        )
    if verdict == FALSE_POSITIVE:
        raise FeedbackError(
            f"a false positive's class is normal; to give alert {alert.id} another class, "
            "confirm it with --label"
        )
    classes = list(alert.alert.probabilities)
    if label == classes[0]:
        raise FeedbackError(
            f"{label!r} means the diagnosis was wrong: mark alert {alert.id} a false positive"
        )
    if label not in classes:
        raise FeedbackError(
            f"{label!r} is not a class of {alert.model} v{alert.model_version}: one of "
            f"{classes[1:]} (a new class needs ASGNet trained again)"
        )


def _stored_alert(row: tuple) -> StoredAlert:
    return StoredAlert(
        id=row[0],
        check=Check(row[1]),
        session=row[2],
        model=row[3],
        model_version=row[4],
        alert=alert_from_json(json.loads(row[5])),
        session_keys=json.loads(row[6]),
        vocabulary=row[7],
        raised_at=row[8],
    )
