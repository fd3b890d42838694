"""``parse``: look at a log before training on it, as logparser and LogAI users do.

Writes logparser's structured CSV (one row per input line, in input order: ``LineId``, the
header fields, ``Content``, ``EventId``, ``EventTemplate``, ``ParameterList``, and for a
malformed line an empty ``EventId`` and its reason in ``Malformed``) and the templates CSV
beside it. Needs no server.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from client.cli.args import add_format_argument


def add_parsers(sub: argparse._SubParsersAction) -> None:
    parse = sub.add_parser(
        "parse",
        help="a log as a structured CSV of templates and parameters (no server needed)",
        description=__doc__,
    )
    parse.add_argument("log", help="a log file, or - for standard input")
    add_format_argument(parse, default="hdfs")
    parse.add_argument(
        "--out", type=Path, required=True, help="the structured CSV (templates: OUT_templates.csv)"
    )


def cmd_parse(args: argparse.Namespace) -> int:
    from client.formats import load_format
    from client.sources import read_file, read_stream
    from client.structured import parse_to_csv

    log_format = load_format(args.log_format)
    if args.log == "-":
        records = read_stream(sys.stdin.buffer)
    else:
        path = Path(args.log)
        if not path.is_file():
            raise FileNotFoundError(f"no log file {path}")
        records = read_file(path)
    if not args.out.parent.is_dir():
        raise FileNotFoundError(f"no folder {args.out.parent} for --out")
    result = parse_to_csv(records, log_format, args.out, progress=sys.stderr.isatty())
    print(
        f"{args.log} ({log_format.name}): {result.stats.summary()}; "
        f"{result.template_count} templates",
        file=sys.stderr,
    )
    print(f"wrote {result.structured} and {result.templates}", file=sys.stderr)
    return 0


COMMANDS = {"parse": cmd_parse}
