"""Command line: ``python -m client <command>`` (also installed as ``logad``).

Commands are thin: they parse arguments and call one function, found in a table. The runtime
commands (``detect``, ``feedback``, ``parse``, ``publish``, ``workflow``) need no torch; the
operations (``demo``, ``train``, ``retrain``, ``rollback``) import what they need when they run.
The evaluations are ``python -m benchmarks``'s.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from client.checkpoint import CheckpointError
from client.cli import detect, feedback, ops, parse, publish, workflow
from client.cli.args import BadArguments
from client.feedback import FeedbackError, StoreError
from client.formats import FormatError
from client.log_bus import BusError
from client.metrics import MetricsError
from client.ops.errors import LabelsError, NotEnoughData, RetrainError
from client.replicas import BadAddress
from client.triton_client import InferenceError, NotServed, ServerUnavailable
from export.contract.errors import VersionMismatch
from export.hdfs_data import DataMissing
from server_config.launcher import ServerStartError

GROUPS = (detect, feedback, ops, parse, publish, workflow)
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    name: command for group in GROUPS for name, command in group.COMMANDS.items()
}
# What a user can get wrong or an outage can cause: one line on stderr, never a traceback.
USER_ERRORS = (
    BadArguments,
    ServerStartError,
    ServerUnavailable,
    InferenceError,
    NotServed,
    DataMissing,
    FileNotFoundError,
    FeedbackError,
    StoreError,
    FormatError,
    RetrainError,
    NotEnoughData,
    LabelsError,
    VersionMismatch,
    CheckpointError,
    MetricsError,
    BusError,
    BadAddress,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logad", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
