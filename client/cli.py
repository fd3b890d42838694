"""Command line: ``python -m client <command>`` (also installed as ``logad``).

Commands are thin: they parse arguments and call one function. Dispatch is a table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from client.triton_client import InferenceError, ServerUnavailable
from export.hdfs_data import DataMissing
from export.publish import PARAM_FORMATS
from server_config.launcher import ServerStartError


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
    with open(args.log, "rb") as f:
        summary = detect_stream(
            (line for line in f),
            model,
            lambda a: print(a.to_json(), flush=True),
            log_format=FORMATS[args.log_format],
            params=params,
            diagnose=diagnose,
        )
    print(
        f"# {summary.parse.summary()}; {summary.sessions} sessions, "
        f"{summary.abnormal_sessions} abnormal, {summary.alerts} log-key alerts, "
        f"{summary.param_alerts} parameter-value alerts, {summary.diagnosis_alerts} diagnosis "
        f"alerts ({'log_anomaly' if diagnose else 'deeplog_keys only'})",
        file=sys.stderr,
    )
    return 0


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
    detect.add_argument("--version", type=int, default=None)
    detect.add_argument("--no-load", action="store_true", help="the model is loaded already")
    detect.add_argument(
        "--no-asgnet",
        action="store_true",
        help="DeepLog's key check only (deeplog_keys), even where ASGNet is published",
    )
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": cmd_demo,
    "evaluate-hdfs": cmd_evaluate_hdfs,
    "evaluate-params": cmd_evaluate_params,
    "evaluate-asgnet": cmd_evaluate_asgnet,
    "train": cmd_train,
    "detect": cmd_detect,
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
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
