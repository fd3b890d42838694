"""One raw log stream through the client: parse, sessions, DeepLog checks, ASGNet, alerts.

Follow a line: ``LogParser.parse`` gives its template, whose position in the version's
vocabulary is its key; each block id it names is a session. By default (an ASGNet version is
served) the session's keys are collected and, when it closes, checked in one ``log_anomaly``
request: DeepLog's verdict per key and ASGNet's diagnosis (``client/log_anomaly.py``). Without
ASGNet, ``StreamingDetector.push`` checks each key against the h keys before it as it arrives.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from client.alerts import Alert
from client.detection import KeyModel, StreamingDetector
from client.formats import HDFS_FORMAT
from client.log_anomaly import LogAnomalyModel, SessionDetector
from client.param_detection import ParamAlert, ParamDetector, ParamModel
from client.parsing import LogFormat, LogParser, ParseStats
from client.stage_clock import PARAMS, PARSE, SESSIONS, StageClock
from export.repository import VersionMismatch
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
    verdicts: dict[str, bool]  # log-key check: session -> abnormal
    params_checked: int = 0  # entries the parameter-value check judged
    param_alerts: int = 0
    param_sessions: frozenset[str] = frozenset()  # sessions with a parameter-value alert
    diagnoses: dict[str, str] = field(default_factory=dict)  # ASGNet: session -> class
    diagnosis_alerts: int = 0
    # Seconds per stage (parse, sessions, triton, decisions, params): client/stage_clock.py
    stages: dict[str, float] = field(default_factory=dict)
    # With keep_keys: each session that raised an alert -> all its keys (what feedback retrains on)
    alerted_keys: dict[str, list[int]] = field(default_factory=dict)


def frozen_parser(model: KeyModel, log_format: LogFormat = HDFS_FORMAT) -> LogParser:
    """A parser that knows exactly the templates of the version it will talk to."""
    return LogParser(log_format, templates=model.meta.vocabulary.templates, learn=False)


def detect_stream(
    lines: Iterable[bytes | str],
    model: KeyModel,
    on_alert: Callable[[Alert | ParamAlert], None],
    batch_windows: int = 1024,
    log_format: LogFormat = HDFS_FORMAT,
    progress: Callable[[int], None] | None = None,
    params: ParamModel | None = None,
    diagnose: LogAnomalyModel | None = None,
    keep_keys: bool = False,
) -> StreamSummary:
    """Check every line with the log-key model (and the parameter-value model, if given); call
    ``on_alert`` as alerts arise; sessions close at end of stream. With ``diagnose``, sessions go
    through the ``log_anomaly`` ensemble (key checks and diagnosis in one request each). With
    ``keep_keys``, the summary holds the keys of every session that raised an alert."""
    if params is not None and params.meta.vocabulary != model.meta.vocabulary:
        raise VersionMismatch(
            f"{params.meta.model} v{params.meta.version} was trained on vocabulary "
            f"{params.meta.vocabulary.fingerprint}, deeplog_keys v{model.meta.version} on "
            f"{model.meta.vocabulary.fingerprint}: their key ids do not mean the same templates"
        )
    parser = frozen_parser(model, log_format)
    clock = StageClock()
    detector: StreamingDetector | SessionDetector = (
        SessionDetector(diagnose, clock=clock)
        if diagnose is not None
        else StreamingDetector(model, batch_windows=batch_windows, clock=clock)
    )
    param_detector = ParamDetector(params) if params is not None else None
    start = time.perf_counter()
    counts: Counter = Counter()  # alerts by check
    keys_of: dict[str, list[int]] = {}
    alerted: set[str] = set()

    def emit(alerts: list) -> None:
        for alert in alerts:
            counts[alert.check] += 1
            alerted.add(alert.session)
            on_alert(alert)

    without_session = 0
    for line_no, raw in enumerate(lines, start=1):
        with clock.stage(PARSE):
            parsed = parser.parse(raw, line_no)
        if progress:
            progress(1)
        if parsed is None:
            continue
        key = FIRST_KEY + parsed.template_id if parsed.template_id >= 0 else UNKNOWN
        sessions = log_format.sessions(parsed)
        if not sessions:
            without_session += 1
        for session in sessions:
            if keep_keys:
                keys_of.setdefault(session, []).append(key)
            with clock.stage(SESSIONS):
                alerts = detector.push(session, key, line_no)
            emit(alerts)
        if param_detector is not None:
            with clock.stage(PARAMS):
                alerts = param_detector.check_line(parsed, log_format)
            emit(alerts)
    with clock.stage(SESSIONS):
        alerts = detector.close_all()
    emit(alerts)
    if param_detector is not None:
        with clock.stage(PARAMS):
            alerts = param_detector.flush()
        emit(alerts)
    verdicts = detector.verdicts()
    return StreamSummary(
        parse=parser.stats,
        lines_without_session=without_session,
        sessions=len(verdicts),
        abnormal_sessions=sum(verdicts.values()),
        windows_checked=detector.windows_checked,
        alerts=counts["log_key"],
        seconds=time.perf_counter() - start,
        verdicts=verdicts,
        params_checked=param_detector.checked if param_detector else 0,
        param_alerts=counts["parameter_value"],
        param_sessions=frozenset(param_detector.flagged_sessions if param_detector else ()),
        diagnoses=detector.diagnoses() if isinstance(detector, SessionDetector) else {},
        diagnosis_alerts=counts["diagnosis"],
        alerted_keys={s: keys_of.get(s, []) for s in alerted} if keep_keys else {},
        stages=clock.split(),
    )
