"""One raw log stream through the client: parse, sessions, DeepLog checks, ASGNet, findings.

Follow a line: ``LogParser.parse`` gives its template, whose position in the version's
vocabulary is its key; each session id it names is a session (``SessionTable``). Without
ASGNet, ``StreamingDetector.push`` checks each key against the h keys before it within
``max_delay_s``; by default (an ASGNet version is served) a session's keys are collected and,
when it closes, checked in one ``log_anomaly`` request: DeepLog's verdict per key and ASGNet's
diagnosis (``client/log_anomaly.py``). A session closes on its format's end rule, after
``session_idle_s`` of quiet, or early when too many are open; a long one is checked in parts.
Alerts go to ``Outputs`` as they are found, a verdict per session (part) when it is complete.
A line of a template the version never learnt is named by its own mined template
(``client/novel_templates.py``) and alerted once per session and template.

``StreamEngine`` takes one record at a time and never holds more than the open sessions;
``run_stream`` drives it from a source with checkpoints; ``detect_stream`` reads a finite
list of lines to the end (tests, the demo, benchmarks).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from client.alerts import AnyAlert, Check, KeyAlert, KeyReason, KeyRef, SessionVerdict
from client.checkpoint import Checkpoint
from client.detection import KeyModel, PartResult, StreamingDetector
from client.formats import LogFormat, builtin
from client.log_anomaly import LogAnomalyModel, SessionDetector
from client.novel_templates import UNNAMED, NovelTemplates
from client.outputs import CallbackOutputs, Outputs
from client.param_detection import ParamDetector, ParamModel
from client.parsing import BAD_TIME, LogParser, ParseStats
from client.sessions import CloseCause, OpenSession, SessionTable, StreamClock
from client.sources import Position, Record
from client.stage_clock import PARAMS, PARSE, SESSIONS, StageClock
from client.step_detection import StepModel, StepStreamingDetector
from client.triton_client import InferenceError, ServerUnavailable
from export.contract.errors import VersionMismatch
from export.contract.specs import DEEPLOG_KEYS
from export.contract.vocab import FIRST_KEY, UNKNOWN

DUE_CHECK_LINES = 64  # lines between two looks at the clock for batches that waited too long
# Seconds between two asks of every replica whether a version with more templates serves on
# all of them (its keys are only sent once no replica can answer with an older one).
VOCABULARY_RECHECK_S = 5.0


@dataclass(frozen=True)
class StreamConfig:
    session_idle_s: float | None = None  # None: the log format's own
    max_open_sessions: int = 100_000
    max_session_keys: int = 4096  # a longer session is checked in parts of this many keys
    max_delay_s: float = 0.2  # longest a key (DeepLog path) or closed session waits unchecked
    batch_windows: int = 1024
    follow: bool = False  # a followed file: a quiet stream's clock runs with the wall clock
    # The run writes checkpoints: it remembers the sessions finished since the oldest open one
    # began (what a resumed run must skip). Without, nothing is kept of a finished session.
    checkpoints: bool = False


@dataclass
class StreamSummary:
    parse: ParseStats
    lines_without_session: int = 0
    sessions: int = 0  # verdicts emitted (sessions, or parts of long ones)
    abnormal_sessions: int = 0  # by DeepLog's key check
    windows_checked: int = 0
    alerts: Counter = field(default_factory=Counter)  # Check -> alerts found
    closed: Counter = field(default_factory=Counter)  # CloseCause -> sessions closed
    diagnosed: Counter = field(default_factory=Counter)  # ASGNet class -> sessions
    params_checked: int = 0
    replayed_lines: int = 0  # after a resume: lines of sessions finished before the restart
    new_templates: int = 0  # templates the version never learnt, mined from unknown lines
    # Templates a newer version learnt (template feedback) while this ran: matched since
    templates_taken_over: int = 0
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # client/stage_clock.py

    def line(self) -> str:
        """One line for a terminal."""
        alerts = ", ".join(f"{self.alerts[c]} {c.value}" for c in Check)
        closed = ", ".join(f"{c.value} {n}" for c, n in sorted(self.closed.items())) or "none"
        unplaced = (
            f"; {self.lines_without_session} lines name no session (not checked)"
            if self.lines_without_session
            else ""
        )
        new = f" ({self.new_templates} new templates)" if self.new_templates else ""
        if self.templates_taken_over:
            new += f" ({self.templates_taken_over} templates taken over from a newer version)"
        return (
            f"{self.parse.summary()}{new}{unplaced}; {self.sessions} sessions checked ({closed}), "
            f"{self.abnormal_sessions} abnormal; alerts: {alerts}"
        )


def frozen_parser(model: KeyModel, log_format: LogFormat) -> LogParser:
    """A parser that knows exactly the templates of the version it will talk to."""
    return LogParser(log_format, templates=model.meta.vocabulary.templates, learn=False)


class StreamEngine:
    """Detection over a stream, one record at a time, findings handed to ``outputs``.

    ``resume`` continues from a checkpoint: the records it is then given start at the
    checkpoint's position, and lines of sessions finished before it are skipped.
    """

    def __init__(
        self,
        model: KeyModel,
        outputs: Outputs,
        log_format: LogFormat | None = None,
        config: StreamConfig = StreamConfig(),
        params: ParamModel | None = None,
        diagnose: LogAnomalyModel | None = None,
        resume: Checkpoint | None = None,
        steps: StepModel | None = None,
    ) -> None:
        """``steps``: check keys with the stepwise model (state carried per session) instead
        of the windowed one; ``model`` still names the keys (the two must share them)."""
        if steps is not None and steps.meta.vocabulary != model.meta.vocabulary:
            raise VersionMismatch(
                f"deeplog_steps v{steps.meta.version} was trained on vocabulary "
                f"{steps.meta.vocabulary.fingerprint}, deeplog_keys v{model.meta.version} on "
                f"{model.meta.vocabulary.fingerprint}: their key ids do not mean the same templates"
            )
        if steps is not None and diagnose is not None:
            raise ValueError("the log_anomaly ensemble runs the windowed key model: no steps")
        if params is not None and not model.meta.vocabulary.extends(params.meta.vocabulary):
            raise VersionMismatch(
                f"{params.meta.model} v{params.meta.version} was trained on vocabulary "
                f"{params.meta.vocabulary.fingerprint}, deeplog_keys v{model.meta.version} on "
                f"{model.meta.vocabulary.fingerprint}: their key ids do not mean the same templates"
            )
        log_format = log_format or builtin("hdfs")
        self.model, self.outputs, self.format, self.config = model, outputs, log_format, config
        self.parser = frozen_parser(model, log_format)
        self.novel = NovelTemplates(log_format)
        # Unknown lines of open sessions by (session, line): their templates, for the alerts
        # they raise; and per session the templates alerted so far (one alert per template).
        self._unknown: dict[tuple[str, int], KeyRef] = {}
        self._alerted: dict[str, set[str]] = {}
        # The fixed window (of lines or time) lines go to now: a later one closes it at once,
        # no need to wait for it to go idle. A line of an earlier window (a late timestamp)
        # closes nothing.
        self._window: tuple[int, str] | None = None
        self.stages = StageClock()
        self.detector: StreamingDetector | SessionDetector | StepStreamingDetector
        if diagnose is not None:
            self.detector = SessionDetector(
                diagnose, max_delay_s=config.max_delay_s, clock=self.stages
            )
        elif steps is not None:
            self.detector = StepStreamingDetector(
                steps, config.batch_windows, config.max_delay_s, self.stages
            )
        else:
            self.detector = StreamingDetector(
                model, config.batch_windows, config.max_delay_s, self.stages
            )
        self.params = (
            ParamDetector(params, max_delay_s=config.max_delay_s) if params is not None else None
        )
        idle = config.session_idle_s or log_format.session_idle_s
        self.table = SessionTable(idle, config.max_open_sessions, config.max_session_keys)
        self.clock = StreamClock(config.follow, resume.clock if resume else float("-inf"))
        self.summary = StreamSummary(self.parser.stats)
        # Sessions (parts) closed, not yet answered: what their verdicts will say of them. A
        # session id that comes back after its session closed is another session: the
        # detectors answer closed sessions in the order they closed, so a queue per id.
        self._closing: dict[tuple[str, int], deque[tuple[OpenSession, CloseCause]]] = {}
        # After a resume: sessions finished before it (skip their lines up to this one) and
        # sessions checked in parts (continue them where their current part began).
        self._finished: dict[str, int] = dict(resume.finished) if resume else {}
        self._carried: dict[str, dict] = dict(resume.carried) if resume else {}
        self._ends = self._end_keys(model.meta.vocabulary.templates)
        self._vocabulary_asked = float("-inf")
        self._line = resume.position.line_no if resume else 0
        # Where the file being read began (its first line, the clock then): a checkpoint can
        # only send a restart back into the file the name now points at.
        self._file = resume.position.identity if resume else None
        self._file_start = (self._line + 1, self.clock.now())
        self._since_due = 0
        self._started = time.perf_counter()

    # -- the stream --------------------------------------------------------------------------

    def feed(self, record: Record, sessions: list[str] | None = None) -> list[str]:
        """One line of the stream; returns the sessions it went into (none: it was malformed,
        named no session, or belongs to a session finished before a resume). ``sessions``,
        where given, are the line's sessions as a log bus's publisher placed it (the windows
        of a bus's lines are the publisher's), instead of what the format reads from it."""
        self._line = record.line_no
        if record.file != self._file:  # the first line, or of a file that replaced the last
            self._file, self._file_start = record.file, (record.line_no, self.clock.now())
        with self.stages.stage(PARSE):
            parsed = (
                self.parser.refuse(record.line_no, "too_long")
                if record.too_long
                else self.parser.parse(record.raw, record.line_no)
            )
        if parsed is None:
            self._after_line()
            return []
        try:
            when = self.format.clock(parsed.header)
        except (ValueError, KeyError, OverflowError):
            # It parsed, but a line at no time cannot be placed.
            self.parser.stats.retract(record.line_no, BAD_TIME, parsed.template_id < 0)
            self._after_line()
            return []
        clock_before = self.clock.now()
        self.clock.observe(when)
        now = self.clock.now()
        key = FIRST_KEY + parsed.template_id if parsed.template_id >= 0 else UNKNOWN
        if sessions is None:
            sessions = self.format.sessions(parsed, when)
        if not sessions:
            self.summary.lines_without_session += 1
        live = [s for s in sessions if not self._replayed(s, record.line_no)]
        novel = self.novel.ref(parsed.content) if key == UNKNOWN and live else None
        with self.stages.stage(SESSIONS):
            if live:
                self._next_window(live[0])
            for session in live:
                if novel is not None:
                    self._unknown[(session, record.line_no)] = novel
                self._push(session, key, record, clock_before, now)
        # A line's values belong to the history of its first session (or of the stream).
        first = sessions[0] if sessions else ""
        if self.params is not None and parsed.template_id >= 0 and (first in live or not first):
            with self.stages.stage(PARAMS):
                gap_clock = when if self.format.clock.timed else None
                alerts = self.params.push(first, key, parsed.params, gap_clock, record.line_no)
            self._emit(alerts)
        self._after_line()
        return live

    def tick(self) -> None:
        """Time passes with no new line (a followed file waiting): close sessions that went
        idle, send batches that waited long enough."""
        self._close_idle()
        self._flush_due()

    def drain(self) -> None:
        """Check everything waiting now (before a checkpoint, and on shutdown)."""
        with self.stages.stage(SESSIONS):
            self._handle(self.detector.flush())
        if self.params is not None:
            with self.stages.stage(PARAMS):
                self._emit(self.params.flush())

    def finish(self) -> StreamSummary:
        """The input ended: close every open session, check everything, return the summary."""
        for entry in self.table.sessions():
            self._close(self.table.pop(entry.id), CloseCause.STREAM_END)
        self.drain()
        return self.close_summary()

    def close_summary(self) -> StreamSummary:
        self.summary.windows_checked = self.detector.windows_checked
        self.summary.params_checked = self.params.checked if self.params else 0
        self.summary.new_templates = len(self.novel)
        self.summary.seconds = time.perf_counter() - self._started
        self.summary.stages = self.stages.split()
        return self.summary

    @property
    def open_sessions(self) -> int:
        return len(self.table)

    # -- checkpoints -------------------------------------------------------------------------

    def checkpoint(
        self, source: str, position: Position, emitted: Callable[[int], list[str]]
    ) -> Checkpoint:
        """Where a restart may read from, once ``drain`` has emitted everything closed.
        ``position`` is the source's next unread line; ``emitted(line)`` the ids of alerts
        found at or after ``line``."""
        oldest = self.table.oldest_part()
        file_line, file_clock = self._file_start
        if oldest is None:
            start, clock = position, self.clock.now()
        elif oldest.first_line < file_line:
            # Open since before a rotation: the old file is gone by its name, so a restart
            # reads the new one from its top (those sessions' earlier lines are not read again).
            start, clock = Position(0, file_line - 1, position.identity), file_clock
        else:
            start = Position(oldest.first_offset, oldest.first_line - 1, position.identity)
            clock = oldest.clock_at_start
        line = start.line_no + 1
        finished = {s: last for s, last in self._finished.items() if last >= line}
        carried = {}
        for entry in self.table.sessions():
            if entry.part > 0:
                finished[entry.id] = entry.first_line - 1
                carried[entry.id] = {
                    "part": entry.part,
                    "keys": self.detector.carry(entry.id),
                    "params": self.params.carry(entry.id) if self.params else None,
                }
        self._finished = finished
        return Checkpoint(
            source=source,
            log_format=self.format.name,
            position=start,
            clock=clock,
            finished=finished,
            carried=carried,
            emitted=emitted(line),
        )

    # -- sessions ----------------------------------------------------------------------------

    def _replayed(self, session: str, line: int) -> bool:
        """A line of a session finished before the checkpoint this run resumed from."""
        last = self._finished.get(session)
        if last is None or line > last:
            return False
        self.summary.replayed_lines += 1
        return True

    def _next_window(self, session: str) -> None:
        index = self.format.sessions.window_index(session)
        if index is None or (self._window is not None and index <= self._window[0]):
            return
        if self._window is not None and self._window[1] in self.table:
            self._close(self.table.pop(self._window[1]), CloseCause.WINDOW_END)
        self._window = (index, session)

    def _push(self, session: str, key: int, record: Record, clock_before: float, now: float):
        carried = self._carried.pop(session, None) if self._carried else None
        entry, new = self.table.touch(
            session,
            record.offset,
            record.line_no,
            clock_before,
            now,
            carried["part"] if carried else 0,
        )
        if carried is not None:
            self.detector.resume(session, carried["keys"])
            if self.params is not None and carried["params"] is not None:
                self.params.resume(session, carried["params"])
        self._handle(self.detector.push(session, key, record.line_no))
        if key in self._ends:
            self._close(self.table.pop(session), CloseCause.END_RULE)
        elif self.table.full(entry):
            self._close(entry, CloseCause.MAX_LENGTH, final=False)
            self.table.next_part(entry, record.end, record.line_no + 1, now)
            if self.params is not None:
                self.params.new_part(session)
        if new:
            for evicted in self.table.over_capacity():
                self._close(evicted, CloseCause.EVICTED)

    def _close(self, entry: OpenSession, cause: CloseCause, final: bool = True) -> None:
        """Close a session (or, not ``final``, its current part): it is checked now, or with
        the next batch; its verdict follows its last answer."""
        if final:
            if self.config.checkpoints:
                self._finished[entry.id] = entry.last_line
            if self.params is not None:
                self.params.forget(entry.id)
        if entry.keys == 0:
            # A session that ended right after a part: that part was its last one checked.
            self.detector.drop(entry.id)
            return
        self.summary.closed[cause] += 1
        self._closing.setdefault((entry.id, entry.part), deque()).append((replace(entry), cause))
        self._handle(self.detector.close(entry.id, final))

    def _close_idle(self) -> None:
        now = self.clock.now()
        if self.table.any_idle(now):
            with self.stages.stage(SESSIONS):
                for entry in self.table.idle(now):
                    self._close(entry, CloseCause.IDLE)

    def _after_line(self) -> None:
        self._close_idle()
        self._since_due += 1
        if self._since_due >= DUE_CHECK_LINES:
            self._flush_due()

    def _flush_due(self) -> None:
        self._since_due = 0
        now = time.monotonic()
        if self.detector.due(now):
            with self.stages.stage(SESSIONS):
                self._handle(self.detector.flush())
        if self.params is not None and self.params.due(now):
            with self.stages.stage(PARAMS):
                self._emit(self.params.flush())

    # -- findings ----------------------------------------------------------------------------

    def _end_keys(self, templates: tuple[str, ...]) -> set[int]:
        rule = self.format.end_rule
        return {FIRST_KEY + i for i, t in enumerate(templates) if rule and rule.search(t)}

    def _follow_vocabulary(self) -> None:
        """A newer version answered with a vocabulary grown by templates (template feedback,
        then a retrain): once it is ready on every replica, the parser matches its new
        templates too, and their lines get their keys instead of UNKNOWN, without a restart.
        Until then they stay unknown: an older version on some replica would refuse the keys."""
        grown = self.model.versions.newest
        templates = grown.vocabulary.templates
        now = time.monotonic()
        if len(templates) <= len(self.parser.templates) or now < self._vocabulary_asked:
            return
        self._vocabulary_asked = now + VOCABULARY_RECHECK_S
        try:
            each = self.model.triton.ready_versions_each([DEEPLOG_KEYS.name])
        except (InferenceError, ServerUnavailable):
            return  # asked again later; the lines meanwhile are unknown, as before
        if each and all(grown.version in v[DEEPLOG_KEYS.name] for v in each.values()):
            self.summary.templates_taken_over += self.parser.extend(templates)
            self._ends = self._end_keys(templates)

    def _handle(self, found: list[AnyAlert | PartResult]) -> None:
        if found and not self.model.pinned:
            self._follow_vocabulary()
        for item in found:
            if isinstance(item, PartResult):
                self._verdict(self._named_unknowns(item))
            elif isinstance(item, KeyAlert) and item.reason is KeyReason.UNKNOWN_KEY:
                self._emit(self._first_sighting(item))
            else:
                self._emit((item,))

    def _first_sighting(self, alert: KeyAlert) -> tuple[KeyAlert, ...]:
        """An unknown line's alert, named by its template: only the template's first in the
        session is emitted (the stored alert counts the repeats)."""
        ref = self._unknown.get((alert.session, alert.line), UNNAMED)  # type: ignore[arg-type]
        alerted = self._alerted.setdefault(alert.session, set())
        if ref.name in alerted:
            return ()
        alerted.add(ref.name)
        return (alert.named(ref),)

    def _named_unknowns(self, result: PartResult) -> PartResult:
        """A closed part's alerts as stored: each unknown template's first alert, named, with
        how often the template came and where in the part's keys; its other alerts."""
        self._alerted.pop(result.session, None)
        kept: list[AnyAlert] = []
        firsts: dict[str, int] = {}  # template name -> index in kept
        indexes: dict[str, list[int]] = {}
        for alert in result.alerts:
            if not (isinstance(alert, KeyAlert) and alert.reason is KeyReason.UNKNOWN_KEY):
                kept.append(alert)
                continue
            ref = self._unknown.pop((alert.session, alert.line), UNNAMED)  # type: ignore[arg-type]
            indexes.setdefault(ref.name, []).append(alert.position - result.start)
            if ref.name not in firsts:
                firsts[ref.name] = len(kept)
                kept.append(alert.named(ref))
        for name, at in firsts.items():
            where = tuple(indexes[name])
            kept[at] = replace(kept[at], repeats=len(where), key_indexes=where)
        return replace(result, alerts=kept) if firsts else result

    def _emit(self, alerts: Iterable[AnyAlert]) -> None:
        for alert in alerts:
            self.summary.alerts[alert.check] += 1
            line = getattr(alert, "line", None)  # a diagnosis names its first lines instead
            self.outputs.alert(alert, line if line is not None else self._line)

    def _verdict(self, result: PartResult) -> None:
        waiting = self._closing[(result.session, result.part)]
        entry, cause = waiting.popleft()
        if not waiting:
            del self._closing[(result.session, result.part)]
        verdict = SessionVerdict(
            session=result.session,
            part=result.part,
            first_line=entry.first_line,
            last_line=entry.last_line,
            keys=result.checked,
            abnormal=result.abnormal,
            key_alerts=sum(1 for a in result.alerts if a.check is Check.LOG_KEY),
            diagnosis=result.diagnosis,
            closed_by=cause,
        )
        self.summary.sessions += 1
        self.summary.abnormal_sessions += verdict.abnormal
        if verdict.diagnosis is not None:
            self.summary.diagnosed[verdict.diagnosis] += 1
        self.outputs.verdict(verdict, result)


def run_stream(
    records: Iterable[Record | None],
    engine: StreamEngine,
    stop: threading.Event,
    save_checkpoint: Callable[[], None] | None = None,
    checkpoint_every_s: float = 5.0,
) -> bool:
    """Feed ``records`` (None: the source waited with nothing new) to ``engine`` until they end
    or ``stop`` is set, checkpointing every ``checkpoint_every_s``. At the end of the input
    every session is closed and checked; when stopped, what is in flight is checked and open
    sessions are left for the checkpoint. Returns True if the input ended."""
    last = time.monotonic()
    for record in records:
        if record is None:
            engine.tick()
        else:
            engine.feed(record)
        if save_checkpoint is not None and time.monotonic() - last >= checkpoint_every_s:
            engine.drain()
            save_checkpoint()
            last = time.monotonic()
        if stop.is_set():
            break
    ended = not stop.is_set()
    if ended:
        engine.finish()
    else:
        engine.drain()
    if save_checkpoint is not None:
        save_checkpoint()
    return ended


def detect_stream(
    lines: Iterable[bytes | str],
    model: KeyModel,
    on_alert: Callable[[AnyAlert], None],
    log_format: LogFormat | None = None,
    params: ParamModel | None = None,
    diagnose: LogAnomalyModel | None = None,
    on_verdict: Callable[[SessionVerdict], None] | None = None,
    config: StreamConfig = StreamConfig(),
    progress: Callable[[int], None] | None = None,
    steps: StepModel | None = None,
) -> StreamSummary:
    """Check a finite sequence of lines to its end: every session closes (by its end rule,
    idle time, or the end of the lines) and gets its verdict."""
    engine = StreamEngine(
        model,
        CallbackOutputs(on_alert, on_verdict),
        log_format,
        config,
        params,
        diagnose,
        steps=steps,
    )
    offset = 0
    for line_no, raw in enumerate(lines, start=1):
        data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
        engine.feed(Record(data, line_no, offset, offset + len(data) + 1))
        offset += len(data) + 1
        if progress is not None:
            progress(1)
    return engine.finish()
