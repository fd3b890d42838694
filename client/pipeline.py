"""One raw log stream through the client: parse, sessions, DeepLog checks, alerts.

Follow a line: ``LogParser.parse`` gives its template, whose position in the version's
vocabulary is its key; each block id it names is a session, and ``StreamingDetector.push``
checks the key against the h keys before it in that session (one request holds many windows).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from client.alerts import Alert
from client.detection import KeyModel, StreamingDetector
from client.parsing import HDFS_FORMAT, LogFormat, LogParser, ParseStats
from client.sessions import hdfs_session_ids
from export.vocab import FIRST_KEY, UNKNOWN


@dataclass(frozen=True)
class StreamSummary:
    parse: ParseStats
    lines_without_session: int
    sessions: int
    abnormal_sessions: int
    windows_checked: int
    alerts: int
    seconds: float
    verdicts: dict[str, bool]


def frozen_parser(model: KeyModel, log_format: LogFormat = HDFS_FORMAT) -> LogParser:
    """A parser that knows exactly the templates of the version it will talk to."""
    return LogParser(log_format, templates=model.meta.vocabulary.templates, learn=False)


def detect_stream(
    lines: Iterable[bytes | str],
    model: KeyModel,
    on_alert: Callable[[Alert], None],
    batch_windows: int = 1024,
    log_format: LogFormat = HDFS_FORMAT,
    progress: Callable[[int], None] | None = None,
) -> StreamSummary:
    """Check every line; call ``on_alert`` as alerts arise; sessions close at end of stream."""
    parser = frozen_parser(model, log_format)
    detector = StreamingDetector(model, batch_windows=batch_windows)
    start = time.perf_counter()
    alerts = 0
    without_session = 0
    for line_no, raw in enumerate(lines, start=1):
        parsed = parser.parse(raw, line_no)
        if progress:
            progress(1)
        if parsed is None:
            continue
        key = FIRST_KEY + parsed.template_id if parsed.template_id >= 0 else UNKNOWN
        sessions = hdfs_session_ids(parsed)
        if not sessions:
            without_session += 1
        for session in sessions:
            for alert in detector.push(session, key, line_no):
                alerts += 1
                on_alert(alert)
    for alert in detector.close_all():
        alerts += 1
        on_alert(alert)
    verdicts = detector.verdicts()
    return StreamSummary(
        parse=parser.stats,
        lines_without_session=without_session,
        sessions=len(verdicts),
        abnormal_sessions=sum(verdicts.values()),
        windows_checked=detector.windows_checked,
        alerts=alerts,
        seconds=time.perf_counter() - start,
        verdicts=verdicts,
    )
