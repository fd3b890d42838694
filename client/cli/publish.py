"""``publish``: log lines onto the log bus (NATS JetStream), each to the partition of its
session, for ``detect --source`` workers. Reads files in turn, standard input, or one file
followed as it grows (as tail -F) until stopped. Needs no Triton.

A line naming sessions of several partitions goes to each; a line naming none (or malformed)
still travels, to partition 0, so a worker counts it. Every message is stored by JetStream
before the next is read: an outage of the bus holds the publisher, it loses nothing.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from client.cli.args import positive
from client.log_bus import DEFAULT_PARTITIONS


def add_parsers(sub: argparse._SubParsersAction) -> None:
    publish = sub.add_parser(
        "publish", help="publish log lines to a log bus (NATS JetStream)", description=__doc__
    )
    publish.add_argument("logs", nargs="+", help="log files, or - for standard input")
    publish.add_argument("--to", required=True, metavar="nats://HOST:PORT[/STREAM]")
    publish.add_argument(
        "--format",
        dest="log_format",
        required=True,
        metavar="NAME|FILE",
        help="the lines' format (how their sessions are named): as the workers' models learnt",
    )
    publish.add_argument("--follow", action="store_true", help="keep reading the file as it grows")
    publish.add_argument(
        "--partitions",
        type=positive(int),
        default=DEFAULT_PARTITIONS,
        help=f"partitions of a bus this creates (default {DEFAULT_PARTITIONS})",
    )
    publish.add_argument(
        "--linger",
        type=positive(float),
        default=0.05,
        help="seconds a partition's lines wait to share a message (default 0.05)",
    )


def cmd_publish(args: argparse.Namespace) -> int:
    from client.formats import load_format
    from client.log_bus import Bus, BusAddress, BusLayout, LinePublisher

    if args.follow and (len(args.logs) != 1 or args.logs[0] == "-"):
        print("logad publish: error: --follow takes one file", file=sys.stderr)
        return 2
    log_format = load_format(args.log_format)
    bus = Bus(BusAddress.parse(args.to))
    try:
        layout = bus.ensure_streams(BusLayout(args.partitions, log_format.name, log_format.digest))
        publisher = LinePublisher(bus, layout, log_format, args.linger)
        stop = threading.Event()
        previous = {
            s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for log in args.logs:
                for record in _records(log, args.follow, stop):
                    if record is None:
                        publisher.tick()
                    else:
                        publisher.add(record)
                        if publisher.summary.lines % 1024 == 0:
                            publisher.tick()
                    if stop.is_set():
                        break
            publisher.flush()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    finally:
        bus.close()
    print(f"# {publisher.summary.line()} to {args.to}", file=sys.stderr)
    return 0


def _records(log: str, follow: bool, stop: threading.Event):
    from client.sources import FollowedFile, LogFile, StandardInput

    if log == "-":
        return StandardInput(sys.stdin.buffer).records(stop)
    path = Path(log)
    if follow:
        return FollowedFile(path).records(stop)
    if not path.is_file():
        raise FileNotFoundError(f"no log file {path}")
    return LogFile(path).records(stop)


COMMANDS = {"publish": cmd_publish}
