"""``detect``: check a log (a file, standard input, or a file followed as it grows) against a
running server, until the input ends or the command is stopped.

It needs only the server's address: every model version's metadata comes from the server.
SIGTERM or Ctrl-C stops it cleanly: what is in flight is checked and emitted, the checkpoint
is written, and it exits 0; run again with the same ``--checkpoint`` it resumes there.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

from client.bus_worker import WorkerConfig
from client.cli.args import (
    add_format_argument,
    add_server_arguments,
    add_store_argument,
    client_security,
    port,
    positive,
    program,
)
from client.log_bus import DEFAULT_PARTITIONS
from client.pipeline import StreamConfig

DEFAULT_METRICS_PORT = 9108


def add_parsers(sub: argparse._SubParsersAction) -> None:
    detect = sub.add_parser(
        "detect",
        help="check a log against a running server; alerts as JSON lines",
        description=__doc__,
    )
    detect.add_argument("log", nargs="?", help="a log file, or - for standard input")
    detect.add_argument(
        "--source",
        metavar="nats://HOST:PORT[/STREAM]",
        help="run as a worker on a log bus (NATS JetStream) instead of reading a file: "
        "partitions shared with the other workers, lines acknowledged once verdicted, "
        "findings also published to STREAM.alerts and STREAM.verdicts",
    )
    detect.add_argument(
        "--follow", action="store_true", help="keep reading as the file grows (as tail -F)"
    )
    add_format_argument(detect, default=None)
    add_server_arguments(detect)
    detect.add_argument(
        "--params",
        choices=["onnx", "torchscript"],
        default=None,
        help="also run the parameter-value check, served from this format",
    )
    detect.add_argument(
        "--no-asgnet",
        action="store_true",
        help="DeepLog's key check only (deeplog_keys), even where ASGNet is served",
    )
    detect.add_argument(
        "--steps",
        action="store_true",
        help="check keys with the stepwise model (deeplog_steps: each key read once, every "
        "session's LSTM state carried by this client) instead of the windowed deeplog_keys; "
        "DeepLog only, no ASGNet diagnosis",
    )
    detect.add_argument(
        "--shared-memory",
        action="store_true",
        help="send the key models' tensors through system shared memory (the server must run "
        "on this host); default: inside the gRPC messages",
    )
    detect.add_argument(
        "--version",
        type=int,
        default=None,
        help="pin deeplog_keys to this version (with --no-asgnet, unless it is the newest: "
        "log_anomaly runs the newest)",
    )
    detect.add_argument("--no-load", action="store_true", help="the models are loaded already")
    out = detect.add_argument_group("outputs")
    out.add_argument("--alerts", type=Path, help="append alerts (JSON lines) to this file")
    out.add_argument("--verdicts", type=Path, help="append a verdict per checked session")
    out.add_argument("--quiet", action="store_true", help="no alerts on standard output")
    add_store_argument(out)
    out.add_argument("--no-store", action="store_true", help="do not record the alerts")
    out.add_argument(
        "--checkpoint",
        type=Path,
        help="resume from and keep writing this checkpoint (needs --alerts)",
    )
    out.add_argument(
        "--checkpoint-every", type=positive(float), default=5.0, help="seconds (default 5)"
    )
    defaults = StreamConfig()
    sessions = detect.add_argument_group("sessions")
    sessions.add_argument(
        "--session-idle",
        type=positive(float),
        default=None,
        help="seconds of quiet that end a session (default: the format's; hdfs 7200)",
    )
    sessions.add_argument(
        "--max-open-sessions", type=positive(int), default=defaults.max_open_sessions
    )
    sessions.add_argument(
        "--max-session-keys",
        type=positive(int),
        default=defaults.max_session_keys,
        help="a longer session is checked in parts of this many keys",
    )
    sessions.add_argument(
        "--max-delay",
        type=positive(float),
        default=defaults.max_delay_s,
        help="seconds a key (or a closed session) may wait for its check (default 0.2)",
    )
    ops = detect.add_argument_group("running")
    ops.add_argument(
        "--retry-for",
        type=positive(float),
        default=60.0,
        help="seconds to keep retrying an unreachable server before giving up (default 60)",
    )
    ops.add_argument(
        "--metrics-port",
        type=port,
        default=DEFAULT_METRICS_PORT,
        help=f"Prometheus metrics on this port (default {DEFAULT_METRICS_PORT}; 0: none)",
    )
    ops.add_argument("--metrics-host", default="127.0.0.1")
    ops.add_argument(
        "--poll", type=positive(float), default=0.05, help="--follow: seconds between looks"
    )
    bus = detect.add_argument_group("log bus (--source)")
    worker = WorkerConfig()
    bus.add_argument(
        "--ack-wait",
        type=positive(float),
        default=worker.ack_wait_s,
        help="seconds before an unacknowledged line is redelivered "
        f"(default {worker.ack_wait_s:g})",
    )
    bus.add_argument(
        "--lease",
        type=positive(float),
        default=worker.lease_s,
        help="seconds a silent worker keeps its partitions before others take them over "
        f"(default {worker.lease_s:g})",
    )
    bus.add_argument(
        "--partitions",
        type=positive(int),
        default=DEFAULT_PARTITIONS,
        help=f"partitions of a bus this worker creates (default {DEFAULT_PARTITIONS})",
    )


def cmd_detect(args: argparse.Namespace) -> int:
    from client.checkpoint import Checkpoint
    from client.detection import open_key_model
    from client.formats import trained_format
    from client.metrics import DetectionMetrics
    from client.outputs import AlertRecorder, DetectionOutputs, JsonLinesLog
    from client.param_detection import open_param_model
    from client.pipeline import StreamEngine, run_stream
    from client.step_detection import open_step_model
    from client.triton_client import RetryPolicy, TritonClient
    from export.contract.specs import DEEPLOG_KEYS, DEEPLOG_STEPS, PARAM_FORMATS

    if (args.log is None) == (args.source is None):
        return _usage("name a log file (or - for standard input), or a log bus with --source")
    if args.source and (args.follow or args.checkpoint):
        return _usage(
            "a log bus is followed and resumed by the bus itself: no --follow, --checkpoint"
        )
    stdin = args.log == "-"
    if stdin and (args.follow or args.checkpoint):
        return _usage("standard input can be neither followed nor resumed: name a file")
    if args.steps and args.source:
        return _usage("--steps checks files and standard input; a bus worker runs deeplog_keys")
    if args.checkpoint and not args.alerts:
        return _usage("--checkpoint needs --alerts FILE: how a resumed run knows what it emitted")
    log = None if stdin or args.source else Path(args.log)
    if log is not None and not args.follow and not log.is_file():
        raise FileNotFoundError(f"no log file {log}")

    metrics = DetectionMetrics()
    triton = TritonClient(
        args.url,
        RetryPolicy(args.retry_for),
        observe=metrics.observe,
        security=client_security(args),
        shared_memory=args.shared_memory,
    )
    load = not args.no_load
    model = open_key_model(triton, args.version, load=load)
    log_format = trained_format(
        model.meta.vocabulary.log_format, f"deeplog_keys v{model.meta.version}", args.log_format
    )
    params = (
        open_param_model(triton, PARAM_FORMATS[args.params].name, load=load)
        if args.params
        else None
    )
    steps = open_step_model(triton, load=load) if args.steps else None
    no_asgnet = args.no_asgnet or args.steps
    diagnose = None if no_asgnet else _log_anomaly_if_served(triton, model, load)
    resume = (
        Checkpoint.load(args.checkpoint, str(log), log_format.name)
        if args.checkpoint and args.checkpoint.exists()
        else None
    )
    outputs = DetectionOutputs(
        stdout=None if args.quiet else sys.stdout,
        alerts=JsonLinesLog(args.alerts) if args.alerts else None,
        verdicts=JsonLinesLog(args.verdicts) if args.verdicts else None,
        checkpointing=args.checkpoint is not None,
    )
    if resume is not None:  # what was emitted before the restart is not emitted again
        outputs.emitted = set(resume.emitted)
        if outputs.alerts is not None:
            outputs.emitted |= outputs.alerts.reopen(resume.alerts_bytes)
        if outputs.verdicts is not None:
            outputs.emitted |= outputs.verdicts.reopen(resume.verdicts_bytes)
    store = None
    if not args.no_store:
        from client.feedback import FeedbackStore

        store = FeedbackStore(args.store)
        outputs.recorder = AlertRecorder(
            store,
            model.meta.vocabulary.fingerprint,
            diagnose.meta.vocabulary.fingerprint if diagnose else None,
            diagnose.asgnet_keys if diagnose else None,
            # Sessions judged normal are kept as traffic of the model that judged them.
            model=(DEEPLOG_STEPS.name, steps.meta.version)
            if steps
            else (DEEPLOG_KEYS.name, model.meta.version),
        )
    config = StreamConfig(
        session_idle_s=args.session_idle,
        max_open_sessions=args.max_open_sessions,
        max_session_keys=args.max_session_keys,
        max_delay_s=args.max_delay,
        follow=args.follow or args.source is not None,  # a quiet bus: time still passes
        checkpoints=args.checkpoint is not None,
    )
    if args.source:
        return _work_on_bus(args, model, outputs, log_format, config, params, diagnose, metrics)
    engine = StreamEngine(model, outputs, log_format, config, params, diagnose, resume, steps)
    source = _source(args, log, resume)
    metrics.watch(engine, source.lag_bytes)
    metrics_port = args.metrics_port and metrics.serve(args.metrics_port, args.metrics_host)

    stop = threading.Event()
    previous = _stop_on_signals(stop)
    _say(
        f"checking {args.log} with deeplog_keys v{model.meta.version} (h={model.meta.window}, "
        f"g={model.meta.top_g})"
        + (f", {params.meta.model} v{params.meta.version}" if params else "")
        + (f", through log_anomaly with ASGNet v{diagnose.meta.version}" if diagnose else "")
        + f" at {args.url}"
        + (f"; resuming at line {resume.position.line_no + 1}" if resume else "")
        + (f"; metrics on {args.metrics_host}:{metrics_port}/metrics" if metrics_port else "")
    )

    def save_checkpoint() -> None:
        checkpoint = engine.checkpoint(str(log), source.position, outputs.since)
        replace(
            checkpoint,
            alerts_bytes=outputs.alerts.size() if outputs.alerts else None,
            verdicts_bytes=outputs.verdicts.size() if outputs.verdicts else None,
        ).save(args.checkpoint)

    try:
        ended = run_stream(
            source.records(stop),
            engine,
            stop,
            save_checkpoint if args.checkpoint else None,
            args.checkpoint_every,
        )
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        outputs.close()
        metrics.close()
        if store is not None:
            store.close()
    summary = engine.close_summary()
    _say(summary.line())
    if outputs.skipped:
        _say(f"{outputs.skipped} alerts found again after the restart were not emitted twice")
    if outputs.recorder is not None:
        _say(
            f"{outputs.recorder.recorded} new alerts recorded in {args.store} "
            f"({program()} feedback list --store {args.store})"
        )
    stages = ", ".join(f"{name} {s:.2f} s" for name, s in summary.stages.items())
    _say(f"{summary.seconds:.2f} s in all ({stages}); {'input ended' if ended else 'stopped'}")
    return 0


def _work_on_bus(args, model, outputs, log_format, config, params, diagnose, metrics) -> int:
    """``detect --source nats://...``: a worker on the log bus until SIGTERM or Ctrl-C."""
    from client.bus_worker import BusOutputs, BusWorker
    from client.log_bus import Bus, BusAddress, BusLayout
    from client.pipeline import StreamEngine

    address = BusAddress.parse(args.source)
    bus = Bus(address)
    layout = bus.ensure_streams(BusLayout(args.partitions, log_format.name, log_format.digest))
    bus_outputs = BusOutputs(outputs)
    engine = StreamEngine(model, bus_outputs, log_format, config, params, diagnose)
    worker = BusWorker(
        bus,
        layout,
        engine.feed,
        engine.tick,
        engine.drain,
        bus_outputs,
        WorkerConfig(ack_wait_s=args.ack_wait, lease_s=args.lease, poll_s=args.poll),
        say=_say,
    )
    metrics.watch(engine, lambda: 0, worker)
    metrics_port = args.metrics_port and metrics.serve(args.metrics_port, args.metrics_host)
    _say(
        f"worker {worker.config.worker_id} on {address.server}/{address.name} "
        f"({layout.partitions} partitions, {layout.log_format}) with deeplog_keys "
        f"v{model.meta.version}"
        + (f" through log_anomaly with ASGNet v{diagnose.meta.version}" if diagnose else "")
        + f" at {args.url}"
        + (f"; metrics on {args.metrics_host}:{metrics_port}/metrics" if metrics_port else "")
    )
    stop = threading.Event()
    previous = _stop_on_signals(stop)
    try:
        worker.run(stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        bus.close()
        outputs.close()
        metrics.close()
        if outputs.recorder is not None:
            outputs.recorder.store.close()
    summary = engine.close_summary()
    _say(summary.line())
    stats = worker.stats
    _say(
        f"{stats.messages} messages ({stats.redelivered} redelivered), {stats.acked} "
        f"acknowledged; {stats.findings_published} findings published "
        f"({stats.findings_duplicate} already there); {worker.held} handed back; stopped"
    )
    return 0


def _stop_on_signals(stop: threading.Event) -> dict:
    """SIGTERM and Ctrl-C set ``stop`` (the run then drains and checkpoints) instead of
    killing it mid-line; returns the handlers to put back. Only the main thread gets signals."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, lambda *_: stop.set())
    return previous


def _source(args: argparse.Namespace, log: Path | None, resume):
    from client.sources import FollowedFile, LogFile, Position, StandardInput

    position = resume.position if resume else Position()
    if log is None:
        return StandardInput(sys.stdin.buffer)
    if args.follow:
        return FollowedFile(log, position, poll_s=args.poll)
    return LogFile(log, position)


def _log_anomaly_if_served(triton, model, load: bool):
    """The log_anomaly ensemble where the server has an ASGNet version, else None (DeepLog's
    key model alone), said on stderr."""
    from client.log_anomaly import open_log_anomaly
    from client.triton_client import InferenceError, NotServed
    from export.contract.specs import LOG_ANOMALY

    try:
        return open_log_anomaly(triton, model, load=load)
    except (InferenceError, NotServed) as exc:
        _say(f"{LOG_ANOMALY.name} is not served ({exc}); checking with deeplog_keys alone")
    return None


def _say(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def _usage(text: str) -> int:
    print(f"{program()} detect: error: {text}", file=sys.stderr)
    return 2


COMMANDS = {"detect": cmd_detect}
