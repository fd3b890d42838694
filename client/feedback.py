"""Operator feedback on alerts, stored durably in SQLite (WAL).

``detect`` records every alert it raises with the session's keys (under the vocabulary of the
model version that raised it); an operator then marks an alert a false positive or confirms it
(for a diagnosis, with the right class). ``retrain`` reads the pending items and marks them used
by the version they went into.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

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
-- A bounded sample of the newest sessions the serving version judged normal in real traffic:
-- a retrain must not flag more of them (the held-out training sessions alone may not look
-- like the traffic).
CREATE TABLE IF NOT EXISTS traffic_normal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vocabulary TEXT NOT NULL,
    session TEXT NOT NULL,
    model TEXT NOT NULL,
    model_version INTEGER NOT NULL,
    session_keys TEXT NOT NULL,
    judged_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS traffic_normal_by_vocabulary ON traffic_normal (vocabulary, id);
-- Templates the serving version never learnt that the operator marked normal: the next
-- version's vocabulary grows by them.
CREATE TABLE IF NOT EXISTS normal_templates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vocabulary TEXT NOT NULL,        -- the vocabulary they are new to
    name TEXT NOT NULL,              -- as alerts named it (client/novel_templates.py)
    template TEXT NOT NULL,
    given_at TEXT NOT NULL,
    used_in TEXT,
    UNIQUE (vocabulary, template)
);
"""

TRAFFIC_SAMPLE = 2000  # normal sessions kept per vocabulary, the newest


class FeedbackError(ValueError):
    """Feedback that cannot be taken: unknown alert, feedback given twice, a bad verdict."""


class StoreError(RuntimeError):
    """The store file cannot be used (corrupt, truncated, empty, read-only, locked): one
    line naming the file and what to do; nothing in it is changed."""


# SQLite's words for a failure -> what it means for the user, and what to do.
_STORE_FAILURES = (
    (
        ("not a database", "malformed", "file is encrypted"),
        "is not a readable feedback store (corrupt or truncated)",
        "restore it from a backup, or move it away to start a new store",
    ),
    (
        ("readonly", "read-only", "unable to open", "disk i/o error"),
        "cannot be written (a read-only file or folder?)",
        "check its permissions, or name another file with --store",
    ),
    (
        ("locked", "busy"),
        "is locked by another process for too long",
        "wait for the other writer (a long retrain?) to finish, then run this again",
    ),
)


F = TypeVar("F", bound=Callable)


def _store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    text = str(exc).lower()
    for words, what, todo in _STORE_FAILURES:
        if any(word in text for word in words):
            return StoreError(f"feedback store {path} {what}: {todo} (sqlite: {exc})")
    return StoreError(f"feedback store {path}: {exc}")


def _store_errors(method: F) -> F:
    """A method of FeedbackStore whose SQLite failures come out as one-line StoreErrors."""

    @functools.wraps(method)
    def run(self: FeedbackStore, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from None
        except OSError as exc:  # the file or its folder out of this user's reach
            raise StoreError(
                f"feedback store {self.path} cannot be used ({exc.strerror}): check its "
                "permissions, or name another file with --store"
            ) from None

    return run  # type: ignore[return-value]


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


@dataclass(frozen=True)
class NormalTemplate:
    """A template marked normal, and the unknown-template alerts it answered."""

    id: int
    vocabulary: str
    name: str
    template: str
    alerts: int  # alerts of it that took a false-positive verdict with it
    given_at: str
    used_in: str | None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class FeedbackStore:
    @_store_errors
    def __init__(self, path: Path, timeout_s: float = 30.0) -> None:
        self.path = path
        if path.is_file() and path.stat().st_size == 0:
            # SQLite would take it as a new database: it is more likely a store lost to a
            # failed copy or a full disk, and taking it as new would hide that.
            raise StoreError(
                f"feedback store {path} is an empty file: restore it from a backup, or "
                "remove it to start a new store"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"feedback store {path}: cannot create its folder ({exc.strerror})"
            ) from None
        self._db = sqlite3.connect(path, timeout=timeout_s)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a confirmed write survives a power cut
            self._db.execute("PRAGMA foreign_keys=ON")
            # A truncated file opens and fails later, mid-run: find out now.
            (verdict,) = self._db.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed: {verdict}")
            self._db.executescript(SCHEMA)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @_store_errors
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

    @_store_errors
    def alert(self, alert_id: str) -> StoredAlert:
        row = self._db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if row is None:
            raise FeedbackError(f"no alert {alert_id!r} in {self.path}")
        return _stored_alert(row)

    @_store_errors
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

    @_store_errors
    def mark_template_normal(self, key_or_alert: str) -> NormalTemplate:
        """An unknown template is normal: named by one of its alerts' id or by its name
        (``new-...``). Every alert of it without feedback becomes a false positive, in one
        transaction."""
        sql = (
            "SELECT vocabulary, json_extract(alert, '$.actual.name'), "
            "json_extract(alert, '$.actual.template') FROM alerts "
            "WHERE json_extract(alert, '$.reason') = 'unknown_key' AND "
        )
        row = self._db.execute(sql + "id = ?", (key_or_alert,)).fetchone()
        if row is None:
            row = self._db.execute(
                sql + "json_extract(alert, '$.actual.name') = ? ORDER BY raised_at DESC",
                (key_or_alert,),
            ).fetchone()
        if row is None:
            raise FeedbackError(
                f"no unknown-template alert or template named {key_or_alert!r} in {self.path} "
                "(feedback list --check log_key shows them, reason unknown_key)"
            )
        vocabulary, name, template = row
        if template == "<unknown>":
            raise FeedbackError(
                f"{key_or_alert}: that line's template was not mined (too many new templates "
                "in that run); mark one of its alerts a false positive instead"
            )
        now = _now()
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO normal_templates (vocabulary, name, template, given_at) "
                "VALUES (?, ?, ?, ?)",
                (vocabulary, name, template, now),
            )
            before = self._db.total_changes
            self._db.execute(
                "INSERT INTO feedback (alert_id, verdict, given_at) "
                "SELECT id, ?, ? FROM alerts WHERE vocabulary = ? "
                "AND json_extract(alert, '$.reason') = 'unknown_key' "
                "AND json_extract(alert, '$.actual.template') = ? "
                "AND id NOT IN (SELECT alert_id FROM feedback)",
                (FALSE_POSITIVE, now, vocabulary, template),
            )
            answered = self._db.total_changes - before
        (marked,) = [t for t in self.normal_templates(vocabulary) if t.template == template]
        return replace(marked, alerts=answered)

    @_store_errors
    def normal_templates(self, vocabulary: str, pending: bool = False) -> list[NormalTemplate]:
        """Templates marked normal that are new to ``vocabulary``, in the order marked."""
        rows = self._db.execute(
            "SELECT id, vocabulary, name, template, given_at, used_in FROM normal_templates "
            "WHERE vocabulary = ? AND (? = 0 OR used_in IS NULL) ORDER BY id",
            (vocabulary, int(pending)),
        )
        return [NormalTemplate(r[0], r[1], r[2], r[3], 0, r[4], r[5]) for r in rows]

    @_store_errors
    def mark_templates_used(self, template_ids: Sequence[int], used_in: str) -> None:
        with self._db:
            self._db.executemany(
                "UPDATE normal_templates SET used_in = ? WHERE id = ?",
                [(used_in, i) for i in template_ids],
            )

    @_store_errors
    def pending(self, model: str | None = None) -> list[Feedback]:
        """Feedback no retrain has used yet, oldest first (of one model's alerts if named)."""
        sql = (
            "SELECT f.id FROM feedback f JOIN alerts a ON a.id = f.alert_id WHERE f.used_in IS NULL"
        )
        args: tuple = ()
        if model is not None:
            sql, args = sql + " AND a.model = ?", (model,)
        return [self._feedback(r[0]) for r in self._db.execute(sql + " ORDER BY f.id", args)]

    @_store_errors
    def confirmed(self, check: Check) -> list[Feedback]:
        """Every confirmed alert of one check, used or not: the known anomalies."""
        rows = self._db.execute(
            "SELECT f.id FROM feedback f JOIN alerts a ON a.id = f.alert_id "
            "WHERE f.verdict = ? AND a.check_name = ? ORDER BY f.id",
            (CONFIRMED, check.value),
        )
        return [self._feedback(r[0]) for r in rows]

    @_store_errors
    def mark_used(self, feedback_ids: Sequence[int], used_in: str) -> None:
        with self._db:
            self._db.executemany(
                "UPDATE feedback SET used_in = ? WHERE id = ?", [(used_in, i) for i in feedback_ids]
            )

    @_store_errors
    def keep_normal(
        self,
        sessions: Sequence[tuple[str, list[int]]],
        model: str,
        model_version: int,
        vocabulary: str,
        limit: int = TRAFFIC_SAMPLE,
    ) -> None:
        """Add sessions the serving version judged normal; only the newest ``limit`` of a
        vocabulary stay."""
        now = _now()
        rows = [(vocabulary, s, model, model_version, json.dumps(k), now) for s, k in sessions]
        with self._db:
            self._db.executemany(
                "INSERT INTO traffic_normal (vocabulary, session, model, model_version, "
                "session_keys, judged_at) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._db.execute(
                "DELETE FROM traffic_normal WHERE vocabulary = ? AND id <= COALESCE(("
                "SELECT id FROM traffic_normal WHERE vocabulary = ? "
                "ORDER BY id DESC LIMIT 1 OFFSET ?), -1)",
                (vocabulary, vocabulary, limit),
            )

    @_store_errors
    def traffic_normal(self, vocabulary: str) -> list[list[int]]:
        """The kept normal traffic sessions of a vocabulary, oldest first."""
        rows = self._db.execute(
            "SELECT session_keys FROM traffic_normal WHERE vocabulary = ? ORDER BY id",
            (vocabulary,),
        )
        return [json.loads(r[0]) for r in rows]

    @_store_errors
    def alerts(
        self, limit: int = 50, session: str | None = None, check: Check | None = None
    ) -> list[tuple[StoredAlert, str | None]]:
        """The newest alerts with their verdict (None: no feedback yet), of one session or
        one check if asked."""
        rows = self._db.execute(
            "SELECT a.*, f.verdict FROM alerts a LEFT JOIN feedback f ON f.alert_id = a.id "
            "WHERE (?1 IS NULL OR a.session = ?1) AND (?2 IS NULL OR a.check_name = ?2) "
            "ORDER BY a.raised_at DESC, a.id LIMIT ?3",
            (session, check.value if check else None, limit),
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
