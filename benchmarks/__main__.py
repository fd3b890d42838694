"""``python -m benchmarks <command>``: the benchmarks (bench, loadtest, follow, parsers) and the
evaluations (evaluate-hdfs, evaluate-params, evaluate-asgnet, evaluate-feedback,
evaluate-asgnet-feedback, evaluate-new-templates, evaluate-workflow), each writing its report.
Dispatch is a table."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from benchmarks.bench import BenchConfig, run_bench
from benchmarks.follow import FollowBenchConfig as FollowDefaults
from benchmarks.loadtest import LoadConfig, run_loadtest
from client.triton_client import InferenceError, ServerUnavailable
from export.hdfs_data import DataMissing
from server_config.launcher import ServerStartError


def cmd_bench(args: argparse.Namespace) -> int:
    config = BenchConfig(device=args.device, tensorrt_fp16=args.tensorrt_fp16)
    if args.quick:
        config = replace(
            config,
            quick=True,
            measurement_ms=500,
            hdfs_copies=2,
            generated_blocks=300,
            loop_windows=200,
        )
    run_bench(config)
    return 0


def cmd_loadtest(args: argparse.Namespace) -> int:
    try:
        config = LoadConfig(
            model=args.model,
            rate=args.rate,
            duration_s=args.duration,
            batch=args.batch,
            max_requests=args.max_requests,
            max_in_flight=args.max_in_flight,
            timeout_s=args.timeout,
            bucket_s=args.interval,
            device=args.device,
            url=args.url,
            repository=args.repository,
            server_pid=args.server_pid,
        )
    except ValueError as exc:
        print(f"python -m benchmarks loadtest: error: {exc}", file=sys.stderr)
        return 2
    result = run_loadtest(config, name=args.report)
    print(
        f"achieved {result.achieved_per_s:,.1f} of {config.rate:g} requests/s; "
        f"errors {sum(result.errors.values()):,}; p99 {result.latency_ms['p99']:.1f} ms; "
        f"report: benchmarks/reports/{args.report}.md"
    )
    return 0


def cmd_follow(args: argparse.Namespace) -> int:
    from benchmarks.follow import FollowBenchConfig, run_follow_bench

    config = FollowBenchConfig(lines=args.lines, latency_s=args.latency_seconds)
    run_follow_bench(config)
    print(Path("benchmarks/reports/follow.md").read_text())
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    from benchmarks.scale import run_scale

    run_scale()
    return 0


def cmd_parsers(args: argparse.Namespace) -> int:
    from benchmarks.parser_report import run_parser_bench

    path = run_parser_bench(args.data / "loghub", growth_lines=args.growth_lines)
    print(path.read_text())
    return 0


def cmd_evaluate_hdfs(args: argparse.Namespace) -> int:
    from benchmarks.evaluations.hdfs import VARIANTS, earlier_results, evaluate_hdfs, write_report
    from export.deeplog_keys import KeyModelConfig

    chosen = list(VARIANTS.items())
    results = {}
    if args.variants:  # the others' rows stay as an earlier run measured them
        chosen = [chosen[i - 1] for i in args.variants]
        results = earlier_results(args.report)
    for label, variant in chosen:
        config = variant
        if isinstance(variant, KeyModelConfig):
            config = replace(variant, epochs=args.epochs, end_marker=not args.no_end_marker)
        print(f"== {label}", flush=True)
        results[label] = (config, evaluate_hdfs(args.repository, config, args.data))
    order = list(VARIANTS)
    results = dict(sorted(results.items(), key=lambda item: order.index(item[0])))
    write_report(results, args.report, "make eval-hdfs")
    print(args.report.read_text())
    return 0


def cmd_evaluate_feedback(args: argparse.Namespace) -> int:
    from benchmarks.evaluations.feedback import (
        FeedbackEvalConfig,
        evaluate_feedback,
        write_feedback_report,
    )

    config = FeedbackEvalConfig(share_fed_back=args.share, epochs=args.epochs)
    result = evaluate_feedback(args.workdir, config, args.data)
    write_feedback_report(result, config, args.report, "make eval-feedback")
    print(args.report.read_text())
    return 0


def cmd_evaluate_workflow(args: argparse.Namespace) -> int:
    from benchmarks.evaluations.workflow import WorkflowEvalConfig, run_workflow_evaluation

    run_workflow_evaluation(WorkflowEvalConfig(run_demo=not args.no_demo))
    return 0


def cmd_evaluate_new_templates(args: argparse.Namespace) -> int:
    from benchmarks.evaluations.new_templates import (
        NewTemplatesConfig,
        evaluate_new_templates,
        write_new_templates_report,
    )

    config = NewTemplatesConfig(train_blocks=args.train_blocks, test_blocks=args.test_blocks)
    result = evaluate_new_templates(args.workdir, config)
    write_new_templates_report(result, args.report, "make eval-new-templates")
    print(args.report.read_text())
    return 0


def cmd_evaluate_asgnet_feedback(args: argparse.Namespace) -> int:
    from benchmarks.evaluations.asgnet_feedback import (
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
    from benchmarks.evaluations.params import main_evaluation
    from export.deeplog_params import ParamModelConfig

    config = ParamModelConfig(epochs=args.epochs, confidence=args.confidence)
    main_evaluation(args.repository, args.data, args.report, config)
    print(args.report.read_text())
    return 0


def cmd_evaluate_asgnet(args: argparse.Namespace) -> int:
    from benchmarks.evaluations.asgnet import main_evaluation

    main_evaluation(args.datasets, args.data, args.report, encoder_folder=args.encoder)
    print(args.report.read_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="perf_analyzer sweep, end to end, side by side")
    bench.add_argument("--quick", action="store_true", help="one level, short: a smoke run")
    bench.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    bench.add_argument("--tensorrt-fp16", action="store_true", help="GPU: TensorRT, FP16")

    load = commands.add_parser(
        "loadtest",
        help="a sustained request rate against a server for a set time",
        description="Without --url, starts a server of its own on the benchmark's models "
        "(trained once into build/bench) and stops it at the end.",
    )
    defaults = LoadConfig()
    load.add_argument("--model", default=defaults.model, help="default: %(default)s")
    load.add_argument("--rate", type=float, default=defaults.rate, help="requests/s")
    load.add_argument("--duration", type=float, default=defaults.duration_s, help="seconds")
    load.add_argument("--batch", type=int, default=defaults.batch, help="rows per request")
    load.add_argument("--max-requests", type=int, default=defaults.max_requests)
    load.add_argument("--max-in-flight", type=int, default=defaults.max_in_flight)
    load.add_argument("--timeout", type=float, default=defaults.timeout_s, help="seconds")
    load.add_argument("--interval", type=float, default=defaults.bucket_s, help="seconds")
    load.add_argument("--device", choices=("cpu", "gpu"), default=defaults.device)
    load.add_argument("--url", help="a running server's gRPC host:port, e.g. 127.0.0.1:8001")
    load.add_argument(
        "--repository", type=Path, default=defaults.repository, help="what --url serves"
    )
    load.add_argument("--server-pid", type=int, help="with --url; else found from the port")
    load.add_argument(
        "--report", default="loadtest", help="benchmarks/reports/REPORT.md, .csv, .png"
    )
    follow = commands.add_parser(
        "follow",
        help="detect --follow as a process of its own: lines/s, memory, alert latency, "
        "SIGKILL and server restarts",
    )
    defaults = FollowDefaults()
    follow.add_argument("--lines", type=int, default=defaults.lines)
    follow.add_argument("--latency-seconds", type=float, default=defaults.latency_s)

    commands.add_parser(
        "scale",
        help="2 Triton replicas, NATS and detect --source workers: faults, version swaps, "
        "1-3 workers; benchmarks/reports/scale.md",
    )
    parsing = commands.add_parser(
        "parsers", help="our parser against Drain3 on loghub's samples; template memory"
    )
    parsing.add_argument("--data", type=Path, default=Path("../shared/data"))
    parsing.add_argument("--growth-lines", type=int, default=5_000_000)

    ev = commands.add_parser("evaluate-hdfs", help="DeepLog on ../shared/data/hdfs through Triton")
    ev.add_argument("--repository", type=Path, default=Path("build/hdfs_eval/model_repository"))
    ev.add_argument("--data", type=Path, default=None, help="folder holding hdfs/ (../shared/data)")
    ev.add_argument("--epochs", type=int, default=30, help="of the windowed variants")
    ev.add_argument(
        "--no-end-marker", action="store_true", help="train the windowed variants without END"
    )
    ev.add_argument(
        "--variants",
        type=int,
        nargs="+",
        help="run only these variants (1-based, in the order of VARIANTS); default all",
    )
    ev.add_argument("--report", type=Path, default=Path("reports/hdfs_deeplog.md"))

    evf = commands.add_parser(
        "evaluate-feedback", help="HDFS false positives fed back: retrain, before and after"
    )
    evf.add_argument("--workdir", type=Path, default=Path("build/feedback_eval"))
    evf.add_argument("--data", type=Path, default=None, help="folder holding hdfs/")
    evf.add_argument("--epochs", type=int, default=30, help="of the base model")
    evf.add_argument("--share", type=float, default=0.5, help="of the false positives fed back")
    evf.add_argument("--report", type=Path, default=Path("reports/feedback_hdfs.md"))

    ent = commands.add_parser(
        "evaluate-new-templates",
        help="templates new after a deployment: alerts before and after template feedback",
    )
    ent.add_argument("--workdir", type=Path, default=Path("build/new_templates_eval"))
    ent.add_argument("--train-blocks", type=int, default=3000)
    ent.add_argument("--test-blocks", type=int, default=3000)
    ent.add_argument("--report", type=Path, default=Path("reports/new_templates.md"))

    ewf = commands.add_parser(
        "evaluate-workflow",
        help="task separation with ids hidden, workflow edges against the true DFG, the demo's "
        "divergence points; writes reports/workflow.md and its pictures",
    )
    ewf.add_argument(
        "--no-demo", action="store_true", help="leave out the demo run (its divergence figures)"
    )

    eaf = commands.add_parser(
        "evaluate-asgnet-feedback",
        help="BGL: wrong ASGNet diagnoses fed back, fine-tune, before/after through Triton",
    )
    eaf.add_argument("--workdir", type=Path, default=Path("build/asgnet_feedback_eval"))
    eaf.add_argument(
        "--data", type=Path, default=None, help="folder holding loghub/ (../shared/data)"
    )
    eaf.add_argument("--share", type=float, default=0.5, help="of the wrong diagnoses fed back")
    eaf.add_argument("--report", type=Path, default=Path("reports/feedback_asgnet_bgl.md"))

    evp = commands.add_parser(
        "evaluate-params", help="parameter-value model vs injected performance anomalies"
    )
    evp.add_argument("--repository", type=Path, default=Path("build/param_eval/model_repository"))
    evp.add_argument("--data", type=Path, default=Path("../shared/data"))
    evp.add_argument("--epochs", type=int, default=40)
    evp.add_argument("--confidence", type=float, default=0.99)
    evp.add_argument("--report", type=Path, default=Path("reports/deeplog_params.md"))

    eva = commands.add_parser(
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

    return parser


COMMANDS = {
    "bench": cmd_bench,
    "loadtest": cmd_loadtest,
    "follow": cmd_follow,
    "scale": cmd_scale,
    "parsers": cmd_parsers,
    "evaluate-hdfs": cmd_evaluate_hdfs,
    "evaluate-feedback": cmd_evaluate_feedback,
    "evaluate-asgnet-feedback": cmd_evaluate_asgnet_feedback,
    "evaluate-new-templates": cmd_evaluate_new_templates,
    "evaluate-workflow": cmd_evaluate_workflow,
    "evaluate-params": cmd_evaluate_params,
    "evaluate-asgnet": cmd_evaluate_asgnet,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ServerUnavailable, InferenceError, ServerStartError, DataMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
