"""Operations: ``demo``, ``train``, ``retrain``, ``rollback``. They train, publish and swap
model versions in a repository, so they import torch and the exporters, each when it runs: the
parser alone imports neither."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from client.cli.args import (
    add_format_argument,
    add_server_arguments,
    add_store_argument,
    client_security,
    positive,
)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="end to end on an embedded workload")
    demo.add_argument("--repository", type=Path, default=Path("model_repository"))
    demo.add_argument("--epochs", type=int, default=12)

    train = sub.add_parser("train", help="train both DeepLog models on a normal raw log")
    train.add_argument("log", type=Path)
    add_format_argument(train, default="hdfs")
    train.add_argument("--repository", type=Path, default=Path("model_repository"))
    train.add_argument(
        "--params",
        choices=["onnx", "torchscript"],
        default="onnx",
        help="how the parameter-value model is exported (and served)",
    )
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--top-g", type=int, default=None, help="default: calibrated")
    train.add_argument("--param-epochs", type=int, default=40)
    train.add_argument("--confidence", type=float, default=0.99)

    ta = sub.add_parser(
        "train-asgnet", help="train ASGNet (diagnosis) on a log and the user's labels; publish it"
    )
    ta.add_argument("log", type=Path)
    add_format_argument(ta, default="hdfs")
    ta.add_argument(
        "--labels",
        type=Path,
        required=True,
        help="CSV with a header: session id (e.g. BlockId) or LineId, then the class; "
        "normal, - or empty are normal",
    )
    ta.add_argument("--repository", type=Path, default=Path("model_repository"))
    ta.add_argument("--epochs", type=positive(int), default=30, help="of S-Net's fine-tune")
    ta.add_argument("--mlm-epochs", type=positive(int), default=5, help="of S-Net's pre-training")
    ta.add_argument("--hidden", type=positive(int), default=64, help="S-Net's width")
    ta.add_argument("--layers", type=positive(int), default=2, help="S-Net's transformer layers")
    ta.add_argument("--seed", type=int, default=0)

    rt = sub.add_parser("retrain", help="learn pending feedback; publish and load a new version")
    add_server_arguments(rt)
    rt.add_argument("--repository", type=Path, default=Path("model_repository"))
    add_store_argument(rt)
    rt.add_argument(
        "--abnormal", type=Path, default=None, help="known anomalies: key names per line"
    )
    # Defaults are UpdateConfig's (export/online.py, not imported here: it imports torch).
    rt.add_argument(
        "--epochs",
        type=positive(int),
        help="of the online update (default 2; up to 8 where many sessions are fed back)",
    )
    rt.add_argument(
        "--learning-rate", type=positive(float), help="of the online update (default 0.001)"
    )
    rt.add_argument("--max-recall-drop", type=float, default=0.0)
    rt.add_argument("--max-fp-rise", type=float, default=0.0, help="as a share of sessions")
    rt.add_argument(
        "--watch",
        type=positive(int),
        default=None,
        metavar="N",
        help="keep running: retrain after every N new false-positive verdicts",
    )
    rt.add_argument(
        "--interval", type=positive(float), default=10.0, help="--watch: seconds between polls"
    )
    rt.add_argument(
        "--cycles", type=positive(int), default=None, help="--watch: stop after this many"
    )

    rb = sub.add_parser("rollback", help="retire the newest version; the one before serves")
    rb.add_argument(
        "model", nargs="?", default="deeplog_keys", help="a model, or asgnet: its five models"
    )
    add_server_arguments(rb)
    rb.add_argument("--repository", type=Path, default=Path("model_repository"))


def cmd_demo(args: argparse.Namespace) -> int:
    from client.ops.demo import DemoConfig, run_demo

    run_demo(DemoConfig(repository=args.repository, epochs=args.epochs))
    return 0


def _learnt_log(args: argparse.Namespace):
    """The training log read with its format and its templates learnt (refused in one line
    when it yields too few sessions): ``(format, lines, corpus)``."""
    from client.formats import load_format
    from client.ops.training import learn_corpus, require_sessions

    if not args.log.is_file():
        raise FileNotFoundError(f"no log file {args.log}")
    log_format = load_format(args.log_format)
    lines = args.log.read_bytes().splitlines()
    corpus = learn_corpus(lines, log_format)
    print(f"{args.log}: {corpus.stats.summary()}; {len(corpus.vocabulary.names)} templates")
    require_sessions(corpus, lines, log_format, str(args.log))
    return log_format, lines, corpus


def cmd_train(args: argparse.Namespace) -> int:
    from client.ops.training import train_and_publish, train_and_publish_params
    from export.deeplog_keys import KeyModelConfig
    from export.deeplog_params import ParamModelConfig

    _, _, corpus = _learnt_log(args)
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
        export_format=args.params,
    )
    from export.contract.specs import PARAM_FORMATS

    name = PARAM_FORMATS[args.params].name
    print(f"{name} v{params_version} ({args.params}) written to {args.repository}")
    return 0


def cmd_train_asgnet(args: argparse.Namespace) -> int:
    from collections import Counter

    import numpy as np

    from client.ops.demo import DemoConfig
    from client.ops.labels import classes_of, read_labels, require_classes, session_labels
    from client.ops.training import labelled_units, train_and_publish_asgnet
    from export.asgnet import stratified_split

    labels = read_labels(args.labels)  # before the long part: a bad file fails at once
    log_format, lines, corpus = _learnt_log(args)
    by_session = session_labels(labels, lines, log_format)
    classes = classes_of(by_session)
    units = labelled_units(lines, by_session, classes, corpus.vocabulary, log_format)
    per_class = Counter({c: int(np.sum(units.labels == i)) for i, c in enumerate(classes)})
    shown = ", ".join(f"{c} {per_class[c]}" for c in classes)
    print(
        f"{args.labels}: labels per {labels.kind.value}; {len(units)} distinct sessions by "
        f"class: {shown}"
    )
    require_classes(per_class, f"{args.labels}")
    train_rows, check_rows = stratified_split(
        units.labels, (0.8, 0.2), np.random.default_rng(args.seed)
    )
    base = DemoConfig().asgnet  # sized to train on two CPU cores
    snet = replace(
        base.snet,
        hidden=args.hidden,
        layers=args.layers,
        heads=max(1, args.hidden // 16),
        intermediate=2 * args.hidden,
        mlm_epochs=args.mlm_epochs,
        seed=args.seed,
    )
    config = replace(base, snet=snet, finetune_epochs=args.epochs)
    published = train_and_publish_asgnet(
        units.select(train_rows),
        units.select(check_rows),
        corpus.vocabulary,
        classes,
        args.repository,
        config,
    )
    print(
        f"asgnet v{published.version} (classes {', '.join(classes)}; {len(train_rows)} "
        f"training, {len(check_rows)} check sessions) written to {args.repository}"
    )
    # The check set also chose when each stage stopped: a little optimistic, and said so.
    print(f"on the check set (it also chose the stopping epochs): {published.check.line()}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    import signal
    import threading

    from client.feedback import FeedbackStore
    from client.ops.retrain import WatchConfig, retrain_pending, watch
    from client.triton_client import TritonClient
    from export.online import Acceptance, UpdateConfig

    triton = TritonClient(args.url, security=client_security(args))
    chosen = {"epochs": args.epochs, "learning_rate": args.learning_rate}
    update = {name: value for name, value in chosen.items() if value is not None}
    with FeedbackStore(args.store) as store:

        def once():
            return retrain_pending(
                store,
                triton,
                args.repository,
                args.abnormal,
                UpdateConfig(**update),
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
        traffic = (
            f"traffic judged normal flagged {r.traffic_flagged}/{r.traffic_sessions}, "
            if r.traffic_sessions
            else ""
        )
        print(
            f"  {name:6s} {normal if r.normal_sessions else ''}{traffic}recall {recall} known "
            f"anomalies, fed-back items still flagged {r.feedback_flagged}/{r.feedback_sessions}"
        )
    if result.top_g is not None:
        print(
            f"  vocabulary +{result.templates_learnt} template(s) marked normal; "
            f"g {result.top_g[0]} -> {result.top_g[1]} (calibrated again on held-out normal)"
        )
    print("  " + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in result.seconds.items()))
    if result.refused:
        print("refused: " + "; ".join(result.refused), file=sys.stderr)
        return 1
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from client.ops.retrain import rollback
    from client.triton_client import TritonClient

    triton = TritonClient(args.url, security=client_security(args))
    retired, serving = rollback(triton, args.repository, args.model)
    print(f"{args.model}: v{retired} retired, v{serving} serving")
    return 0


COMMANDS = {
    "demo": cmd_demo,
    "train": cmd_train,
    "train-asgnet": cmd_train_asgnet,
    "retrain": cmd_retrain,
    "rollback": cmd_rollback,
}
