"""python -m benchmarks bench|loadtest [options]"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from benchmarks.bench import BenchConfig, run_bench
from benchmarks.loadtest import LoadConfig, run_loadtest
from client.triton_client import InferenceError, ServerUnavailable
from server_config.launcher import ServerStartError


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)

    if args.command == "bench":
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
    elif args.command == "loadtest":
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
            parser.error(str(exc))
        try:
            result = run_loadtest(config, name=args.report)
        except (ServerUnavailable, InferenceError, ServerStartError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(
            f"achieved {result.achieved_per_s:,.1f} of {config.rate:g} requests/s; "
            f"errors {sum(result.errors.values()):,}; p99 {result.latency_ms['p99']:.1f} ms; "
            f"report: benchmarks/reports/{args.report}.md"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
