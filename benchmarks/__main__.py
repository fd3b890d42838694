"""python -m benchmarks bench|loadtest [options]"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from benchmarks.bench import BenchConfig, run_bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="perf_analyzer sweep, end to end, side by side")
    bench.add_argument("--quick", action="store_true", help="one level, short: a smoke run")
    bench.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    bench.add_argument("--tensorrt-fp16", action="store_true", help="GPU: TensorRT, FP16")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
