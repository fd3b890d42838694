"""Where detection's findings go: JSON lines (stdout, append-only files), the feedback store.

An alert is written the moment it is found, each as one line with its stable id; a session's
verdict when its last check is answered, and then its alerts go into the feedback store with
the session's keys (what a retrain learns from). After a restart the files tell what was
already emitted: ``JsonLinesLog.reopen`` reads back the ids written since the checkpoint, and
those are skipped when the resumed run finds them again, so nothing is emitted twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

from client.alerts import AnyAlert, Check, SessionVerdict, alert_record
from client.detection import PartResult
from client.feedback import FeedbackStore


class Outputs(Protocol):
    """What the stream engine hands its findings to."""

    def alert(self, alert: AnyAlert, line: int) -> None:
        """An alert found at raw line ``line`` (for an end-of-session alert, the line the
        stream had reached)."""

    def verdict(self, verdict: SessionVerdict, result: PartResult) -> None:
        """A session (part) whose every check is answered; ``result`` holds its keys and
        its alerts."""


class JsonLinesLog:
    """An append-only file of JSON lines, each with an ``id``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open while running

    def reopen(self, since: int | None) -> set[str]:
        """After a restart: cut a line torn by a kill, and return the ids written from byte
        ``since`` on (all of them when ``since`` is None)."""
        self._file.close()
        with open(self.path, "rb+") as raw:
            data = raw.read()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                raw.truncate(end)  # the last line was cut off mid-write: it is written again
        ids = set()
        start = 0 if since is None or since > end else since
        for line in data[start:end].splitlines():
            if line.strip():
                ids.add(json.loads(line)["id"])
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        return ids

    def size(self) -> int:
        self._file.flush()
        return os.path.getsize(self.path)

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()  # a follower of this file (and a kill) sees whole lines at once

    def close(self) -> None:
        self._file.close()


@dataclass
class AlertRecorder:
    """Records a finished session's alerts in the feedback store with its keys, each key id
    under the vocabulary of the model that raised the alert (ASGNet's count-vector keys for a
    diagnosis, the key model's otherwise)."""

    store: FeedbackStore
    key_vocabulary: str  # fingerprint
    asgnet_vocabulary: str | None = None
    asgnet_keys: Callable[[list[int]], list[int]] | None = None
    recorded: int = 0
    # Sessions judged normal, written to the store's traffic sample in batches.
    model: tuple[str, int] | None = None  # the key model judging them: (name, version)
    normal: list[tuple[str, list[int]]] = field(default_factory=list)
    batch: int = 256

    def record(self, alerts: list[AnyAlert], session: str, keys: list[int]) -> None:
        diagnoses = [a for a in alerts if a.check is Check.DIAGNOSIS]
        others = [a for a in alerts if a.check is not Check.DIAGNOSIS]
        if others:
            self.recorded += self.store.record(others, {session: keys}, self.key_vocabulary)
        if diagnoses and self.asgnet_keys is not None and self.asgnet_vocabulary:
            translated = {session: self.asgnet_keys(keys)}
            self.recorded += self.store.record(diagnoses, translated, self.asgnet_vocabulary)

    def judged_normal(self, session: str, keys: list[int]) -> None:
        """A whole session every check found normal: a sample of the traffic a retrain is
        checked on."""
        if self.model is None:
            return
        self.normal.append((session, keys))
        if len(self.normal) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self.normal and self.model is not None:
            self.store.keep_normal(self.normal, *self.model, self.key_vocabulary)
        self.normal = []


@dataclass
class DetectionOutputs:
    """The ``detect`` command's outputs: JSON lines to stdout and/or an alerts file, verdicts
    to a file, alerts into the feedback store. ``emitted`` holds ids a resumed run already
    wrote; with ``checkpointing``, ``recent`` keeps the (line, id) of alerts found since, for
    the next checkpoint."""

    stdout: TextIO | None = None
    alerts: JsonLinesLog | None = None
    verdicts: JsonLinesLog | None = None
    recorder: AlertRecorder | None = None
    checkpointing: bool = False
    emitted: set[str] = field(default_factory=set)
    recent: list[tuple[int, str]] = field(default_factory=list)
    skipped: int = 0  # alerts found again after a restart, already emitted before it

    def alert(self, alert: AnyAlert, line: int) -> None:
        record = alert_record(alert)
        if self.checkpointing:
            self.recent.append((line, record["id"]))
        if alert.check is Check.PARAMETER_VALUE and self.recorder is not None:
            # A value's feedback is learnt from the alert alone: stored as it is found.
            self.recorder.record([alert], alert.session, [])
        if record["id"] in self.emitted:
            self.skipped += 1
            return
        if self.alerts is not None:
            self.alerts.write(record)
        if self.stdout is not None:
            self.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.stdout.flush()

    def verdict(self, verdict: SessionVerdict, result: PartResult) -> None:
        if self.recorder is not None:
            alerts = [a for a in result.alerts if a.check is not Check.PARAMETER_VALUE]
            self.recorder.record(alerts, verdict.session, result.keys)
            if not alerts and result.part == 0 and result.keys:
                self.recorder.judged_normal(verdict.session, result.keys)
        if self.verdicts is not None and verdict.id not in self.emitted:
            self.verdicts.write(verdict.record())

    def since(self, line: int) -> list[str]:
        """Ids of alerts found at or after ``line``; older ones are forgotten (a resumed run
        starts at or after ``line``, so it cannot find them again)."""
        self.recent = [(n, i) for n, i in self.recent if n >= line]
        return [i for _, i in self.recent]

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.flush()
        for log in (self.alerts, self.verdicts):
            if log is not None:
                log.close()


@dataclass
class CallbackOutputs:
    """Findings to plain callbacks: how tests, the demo and benchmarks read a stream."""

    on_alert: Callable[[AnyAlert], None]
    on_verdict: Callable[[SessionVerdict], None] | None = None

    def alert(self, alert: AnyAlert, line: int) -> None:
        self.on_alert(alert)

    def verdict(self, verdict: SessionVerdict, result: PartResult) -> None:
        if self.on_verdict is not None:
            self.on_verdict(verdict)
