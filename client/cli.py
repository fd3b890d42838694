"""Command line: ``python -m client <command>`` (also installed as ``logad``).

Commands are thin: they parse arguments and call one function. Dispatch is a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from client.feedback import FeedbackError
from client.retrain import RetrainError
from client.triton_client import InferenceError, ServerUnavailable
from export.hdfs_data import DataMissing
from export.online import UpdateConfig
from export.publish import PARAM_FORMATS
from export.repository import VersionMismatch
from server_config.launcher import ServerStartError

DEFAULT_STORE = Path("state/feedback.sqlite")


def cmd_demo(args: argparse.Namespace) -> int:
    from client.demo import DemoConfig, run_demo

    run_demo(DemoConfig(repository=args.repository, epochs=args.epochs))
    return 0


def cmd_evaluate_hdfs(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from client.evaluate import VARIANTS, evaluate_hdfs, write_report

    results = {}
    for label, variant in VARIANTS.items():
        config = replace(variant, epochs=args.epochs, end_marker=not args.no_end_marker)
        print(f"== {label}", flush=True)
        results[label] = (config, evaluate_hdfs(args.repository, config, args.data))
    write_report(results, args.report, "make eval-hdfs")
    print(args.report.read_text())
    return 0


def cmd_evaluate_feedback(args: argparse.Namespace) -> int:
    from client.evaluate_feedback import (
        FeedbackEvalConfig,
        evaluate_feedback,
        write_feedback_report,
    )

    config = FeedbackEvalConfig(share_fed_back=args.share, epochs=args.epochs)
    result = evaluate_feedback(args.workdir, config, args.data)
    write_feedback_report(result, config, args.report, "make eval-feedback")
    print(args.report.read_text())
    return 0


def cmd_evaluate_asgnet_feedback(args: argparse.Namespace) -> int:
    from client.evaluate_asgnet_feedback import (
        AsgnetFeedbackConfig,
        evaluate_asgnet_feedback,
        write_asgnet_feedback_report,
    )

    config = AsgnetFeedbackConfig(share_fed_back=args.share)
    result = evaluate_asgnet_feedback(args.workdir, config, args.data)
    write_asgnet_feedback_report(result, config, args.report, "make eval-feedback")
    print(args.report.read_text())
    return 0


def cmd_evaluate_params(args: argparse.Namespace) -> int:
    from client.evaluate_params import main_evaluation
    from export.deeplog_params import ParamModelConfig

    config = ParamModelConfig(epochs=args.epochs, confidence=args.confidence)
    main_evaluation(args.repository, args.data, args.report, config)
    print(args.report.read_text())
    return 0


def cmd_evaluate_asgnet(args: argparse.Namespace) -> int:
    from client.evaluate_asgnet import main_evaluation

    main_evaluation(args.datasets, args.data, args.report, encoder_folder=args.encoder)
    print(args.report.read_text())
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from client.formats import FORMATS
    from client.training import learn_corpus, train_and_publish, train_and_publish_params
    from export.deeplog_keys import KeyModelConfig
    from export.deeplog_params import ParamModelConfig

    corpus = learn_corpus(args.log.read_bytes().splitlines(), FORMATS[args.log_format])
    print(f"{args.log}: {corpus.stats.summary()}; {len(corpus.vocabulary.names)} templates")
    keys = train_and_publish(
        corpus.sessions,
        corpus.vocabulary,
        args.repository,
        KeyModelConfig(top_g=args.top_g, epochs=args.epochs),
        source=str(args.log),
    )
    print(f"deeplog_keys v{keys} (ONNX) written to {args.repository}")
    params_version = train_and_publish_params(
        corpus,
        args.repository,
        ParamModelConfig(epochs=args.param_epochs, confidence=args.confidence),
        export_format=args.format,
    )
    name = PARAM_FORMATS[args.format].name
    print(f"{name} v{params_version} ({args.format}) written to {args.repository}")
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from client.detection import open_key_model
    from client.feedback import FeedbackStore, alert_id
    from client.formats import FORMATS
    from client.log_anomaly import open_log_anomaly
    from client.param_detection import open_param_model
    from client.pipeline import detect_stream
    from client.triton_client import TritonClient
    from export.repository import versions
    from export.specs import ASGNET_GNET

    triton = TritonClient(args.url)
    load = not args.no_load
    model = open_key_model(triton, args.repository, args.version, load=load)
    params = (
        open_param_model(triton, args.repository, PARAM_FORMATS[args.params].name, load=load)
        if args.params
        else None
    )
    # The default path is the log_anomaly ensemble, wherever an ASGNet version is published.
    diagnose = (
        open_log_anomaly(triton, model, args.repository, load=load)
        if not args.no_asgnet and versions(args.repository, ASGNET_GNET.name)
        else None
    )
    raised: list = []

    def on_alert(alert) -> None:
        raised.append(alert)
        print(json.dumps({"id": alert_id(alert), **asdict(alert)}, ensure_ascii=False), flush=True)

    with open(args.log, "rb") as f:
        summary = detect_stream(
            (line for line in f),
            model,
            on_alert,
            log_format=FORMATS[args.log_format],
            params=params,
            diagnose=diagnose,
            keep_keys=not args.no_store,
        )
    if not args.no_store:
        # A diagnosis is retrained in ASGNet's key ids, the other alerts in the key model's.
        diagnoses = [a for a in raised if a.check == "diagnosis"]
        others = [a for a in raised if a.check != "diagnosis"]
        with FeedbackStore(args.store) as store:
            new = store.record(others, summary.alerted_keys, model.meta.vocabulary.fingerprint)
            if diagnose is not None and diagnoses:
                asgnet_keys = {
                    a.session: diagnose.asgnet_keys(summary.alerted_keys[a.session])
                    for a in diagnoses
                }
                new += store.record(diagnoses, asgnet_keys, diagnose.meta.vocabulary.fingerprint)
        print(
            f"# {new} new alerts recorded in {args.store} (feedback: logad feedback)",
            file=sys.stderr,
        )
    print(
        f"# {summary.parse.summary()}; {summary.sessions} sessions, "
        f"{summary.abnormal_sessions} abnormal, {summary.alerts} log-key alerts, "
        f"{summary.param_alerts} parameter-value alerts, {summary.diagnosis_alerts} diagnosis "
        f"alerts ({'log_anomaly' if diagnose else 'deeplog_keys only'})",
        file=sys.stderr,
    )
    stages = ", ".join(f"{name} {s:.2f} s" for name, s in summary.stages.items())
    print(f"# {summary.seconds:.2f} s in all; {stages}", file=sys.stderr)
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from client.feedback import CONFIRMED, FALSE_POSITIVE, FeedbackStore

    with FeedbackStore(args.store) as store:
        if args.action == "list":
            for alert, verdict in store.alerts(args.limit):
                print(
                    f"{alert.id}  {alert.check:15s} {alert.session:28s} {alert.model} "
                    f"v{alert.model_version}  {verdict or '-'}"
                )
            return 0
        verdict = FALSE_POSITIVE if args.action == "false-positive" else CONFIRMED
        given = store.give(args.alert_id, verdict, getattr(args, "label", None))
    print(
        f"feedback #{given.id}: alert {given.alert.id} ({given.alert.check}, session "
        f"{given.alert.session}, {given.alert.model} v{given.alert.model_version}) marked "
        f"{given.verdict}{f' as {given.label}' if given.label else ''} at {given.given_at}"
    )
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    import signal
    import threading

    from client.feedback import FeedbackStore
    from client.retrain import WatchConfig, retrain_pending, watch
    from client.triton_client import TritonClient
    from export.online import Acceptance

    triton = TritonClient(args.url)
    with FeedbackStore(args.store) as store:

        def once():
            return retrain_pending(
                store,
                triton,
                args.repository,
                args.abnormal,
                UpdateConfig(epochs=args.epochs),
                Acceptance(args.max_recall_drop, args.max_fp_rise),
            )

        if args.watch is None:
            return max(_print_retrain(result) for result in once())
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        config = WatchConfig(args.watch, args.interval, args.cycles)
        print(
            f"watching {args.store}: a retrain after every {config.every} new feedback "
            f"item(s) to learn, checked every {config.interval_s:g} s (Ctrl-C stops)",
            flush=True,
        )

        def report(outcome) -> None:
            if isinstance(outcome, Exception):
                print(f"retrain failed: {outcome}", file=sys.stderr, flush=True)
            else:
                for result in outcome:
                    _print_retrain(result)
            sys.stdout.flush()

        try:
            attempts = watch(store, once, config, report, stop)
        except KeyboardInterrupt:
            attempts = None
        print(f"watch stopped{f' after {attempts} retrain(s)' if attempts is not None else ''}")
    return 0


def _print_retrain(result) -> int:
    """A retrain's outcome for the terminal; 1 when it refused to publish."""
    print(f"{result.model}: v{result.old_version} -> ", end="")
    print(f"v{result.new_version}" if result.new_version else "nothing published")
    for name, r in (("before", result.before), ("after", result.after)):
        recall = "n/a" if r.recall is None else f"{r.recall:.4f} of {r.anomalies}"
        normal = f"false positives {r.false_positives}/{r.normal_sessions} known normal, "
        print(
            f"  {name:6s} {normal if r.normal_sessions else ''}recall {recall} known anomalies, "
            f"fed-back items still flagged {r.feedback_flagged}/{r.feedback_sessions}"
        )
    print("  " + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in result.seconds.items()))
    if result.refused:
        print("refused: " + "; ".join(result.refused), file=sys.stderr)
        return 1
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from client.retrain import rollback
    from client.triton_client import TritonClient

    retired, serving = rollback(TritonClient(args.url), args.repository, args.model)
    print(f"{args.model}: v{retired} retired, v{serving} serving")
    return 0


def _positive(kind: type) -> Callable[[str], int | float]:
    """An argparse type: a number above zero, else a usage error naming the value."""

    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above zero, not {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logad", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="end to end on an embedded workload")
    demo.add_argument("--repository", type=Path, default=Path("model_repository"))
    demo.add_argument("--epochs", type=int, default=12)

    ev = sub.add_parser("evaluate-hdfs", help="DeepLog on ../shared/data/hdfs through Triton")
    ev.add_argument("--repository", type=Path, default=Path("build/hdfs_eval/model_repository"))
    ev.add_argument("--data", type=Path, default=None, help="folder holding hdfs/ (../shared/data)")
    ev.add_argument("--epochs", type=int, default=30)
    ev.add_argument("--no-end-marker", action="store_true", help="train without the END key")
    ev.add_argument("--report", type=Path, default=Path("reports/hdfs_deeplog.md"))

    evf = sub.add_parser(
        "evaluate-feedback", help="HDFS false positives fed back: retrain, before and after"
    )
    evf.add_argument("--workdir", type=Path, default=Path("build/feedback_eval"))
    evf.add_argument("--data", type=Path, default=None, help="folder holding hdfs/")
    evf.add_argument("--epochs", type=int, default=30, help="of the base model")
    evf.add_argument("--share", type=float, default=0.5, help="of the false positives fed back")
    evf.add_argument("--report", type=Path, default=Path("reports/feedback_hdfs.md"))

    eaf = sub.add_parser(
        "evaluate-asgnet-feedback",
        help="BGL: wrong ASGNet diagnoses fed back, fine-tune, before/after through Triton",
    )
    eaf.add_argument("--workdir", type=Path, default=Path("build/asgnet_feedback_eval"))
    eaf.add_argument(
        "--data", type=Path, default=None, help="folder holding loghub/ (../shared/data)"
    )
    eaf.add_argument("--share", type=float, default=0.5, help="of the wrong diagnoses fed back")
    eaf.add_argument("--report", type=Path, default=Path("reports/feedback_asgnet_bgl.md"))

    evp = sub.add_parser(
        "evaluate-params", help="parameter-value model vs injected performance anomalies"
    )
    evp.add_argument("--repository", type=Path, default=Path("build/param_eval/model_repository"))
    evp.add_argument("--data", type=Path, default=Path("../shared/data"))
    evp.add_argument("--epochs", type=int, default=40)
    evp.add_argument("--confidence", type=float, default=0.99)
    evp.add_argument("--report", type=Path, default=Path("reports/deeplog_params.md"))

    eva = sub.add_parser(
        "evaluate-asgnet", help="ASGNet and its ablation on HDFS sessions and BGL windows"
    )
    eva.add_argument("--data", type=Path, default=None, help="../shared/data by default")
    eva.add_argument("--datasets", nargs="+", choices=["hdfs", "bgl"], default=["hdfs", "bgl"])
    eva.add_argument("--report", type=Path, default=Path("reports/asgnet.md"))
    eva.add_argument(
        "--encoder",
        type=Path,
        default=None,
        help="local RoBERTa checkpoint folder (save_pretrained output) to fine-tune; "
        "default: pre-train one on the log text by MLM",
    )

    train = sub.add_parser("train", help="train both DeepLog models on a normal raw log")
    train.add_argument("log", type=Path)
    train.add_argument("--log-format", choices=["hdfs", "openstack"], default="hdfs")
    train.add_argument("--repository", type=Path, default=Path("model_repository"))
    train.add_argument(
        "--format",
        choices=["onnx", "torchscript"],
        default="onnx",
        help="export format of the parameter-value model",
    )
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--top-g", type=int, default=None, help="default: calibrated")
    train.add_argument("--param-epochs", type=int, default=40)
    train.add_argument("--confidence", type=float, default=0.99)

    detect = sub.add_parser("detect", help="stream a raw log file to a running server")
    detect.add_argument("log", type=Path)
    detect.add_argument("--log-format", choices=["hdfs", "openstack"], default="hdfs")
    detect.add_argument(
        "--params",
        choices=["onnx", "torchscript"],
        default=None,
        help="also run the parameter-value check, served from this format",
    )
    detect.add_argument("--url", default="127.0.0.1:8001")
    detect.add_argument("--repository", type=Path, default=Path("model_repository"))
    detect.add_argument(
        "--version",
        type=int,
        default=None,
        help="pin deeplog_keys to this version (with --no-asgnet, unless it is the newest: "
        "log_anomaly runs the newest)",
    )
    detect.add_argument("--no-load", action="store_true", help="the model is loaded already")
    detect.add_argument("--store", type=Path, default=DEFAULT_STORE, help="feedback store")
    detect.add_argument("--no-store", action="store_true", help="do not record the alerts")
    detect.add_argument(
        "--no-asgnet",
        action="store_true",
        help="DeepLog's key check only (deeplog_keys), even where ASGNet is published",
    )

    fb = sub.add_parser("feedback", help="mark an alert a false positive or confirm it")
    fb.add_argument("--store", type=Path, default=DEFAULT_STORE)
    fb_sub = fb.add_subparsers(dest="action", required=True)
    fb_list = fb_sub.add_parser("list", help="the newest alerts and their feedback")
    fb_list.add_argument("--limit", type=int, default=50)
    fp = fb_sub.add_parser("false-positive", help="the alert was wrong: the models learn it")
    fp.add_argument("alert_id")
    ok = fb_sub.add_parser("confirm", help="the alert was right (for a diagnosis: --label)")
    ok.add_argument("alert_id")
    ok.add_argument("--label", default=None, help="the right class of a diagnosis alert")

    rt = sub.add_parser("retrain", help="learn pending feedback; publish and load a new version")
    rt.add_argument("--url", default="127.0.0.1:8001")
    rt.add_argument("--repository", type=Path, default=Path("model_repository"))
    rt.add_argument("--store", type=Path, default=DEFAULT_STORE)
    rt.add_argument(
        "--abnormal", type=Path, default=None, help="known anomalies: key names per line"
    )
    rt.add_argument("--epochs", type=int, default=UpdateConfig().epochs)
    rt.add_argument("--max-recall-drop", type=float, default=0.0)
    rt.add_argument("--max-fp-rise", type=float, default=0.0, help="as a share of sessions")
    rt.add_argument(
        "--watch",
        type=_positive(int),
        default=None,
        metavar="N",
        help="keep running: retrain after every N new false-positive verdicts",
    )
    rt.add_argument(
        "--interval", type=_positive(float), default=10.0, help="--watch: seconds between polls"
    )
    rt.add_argument(
        "--cycles", type=_positive(int), default=None, help="--watch: stop after this many"
    )

    rb = sub.add_parser("rollback", help="retire the newest version; the one before serves")
    rb.add_argument(
        "model", nargs="?", default="deeplog_keys", help="a model, or asgnet: its four models"
    )
    rb.add_argument("--url", default="127.0.0.1:8001")
    rb.add_argument("--repository", type=Path, default=Path("model_repository"))
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": cmd_demo,
    "evaluate-hdfs": cmd_evaluate_hdfs,
    "evaluate-feedback": cmd_evaluate_feedback,
    "evaluate-asgnet-feedback": cmd_evaluate_asgnet_feedback,
    "evaluate-params": cmd_evaluate_params,
    "evaluate-asgnet": cmd_evaluate_asgnet,
    "train": cmd_train,
    "detect": cmd_detect,
    "feedback": cmd_feedback,
    "retrain": cmd_retrain,
    "rollback": cmd_rollback,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (
        ServerStartError,
        ServerUnavailable,
        InferenceError,
        DataMissing,
        FileNotFoundError,
        FeedbackError,
        RetrainError,
        VersionMismatch,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
