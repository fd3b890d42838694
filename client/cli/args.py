"""Argument types and defaults the command groups share."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable
from pathlib import Path

DEFAULT_STORE = Path("state/feedback.sqlite")


class BadArguments(ValueError):
    """Arguments that parse but cannot be used (a missing key file): one line, exit 1."""


DEFAULT_URL = "127.0.0.1:8001"


def positive(kind: type) -> Callable[[str], int | float]:
    """An argparse type: a number above zero, else a usage error naming the value."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above zero, not {text}")
        return value

    return parse


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 for none."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text}")
    return value


def program() -> str:
    """How the user runs this tool, for hints: ``logad`` where it is on PATH."""
    return "logad" if shutil.which("logad") else "python -m client"


def add_store_argument(parser: argparse.ArgumentParser, top: bool = True) -> None:
    """--store, the same wherever it is given (``feedback --store X list`` and ``feedback list
    --store X``): the subcommand's copy only overrides when given."""
    parser.add_argument(
        "--store",
        type=Path,
        default=DEFAULT_STORE if top else argparse.SUPPRESS,
        help=f"the feedback store (default {DEFAULT_STORE})",
    )


def add_format_argument(parser: argparse.ArgumentParser, default: str | None) -> None:
    from client.formats import builtin_names

    parser.add_argument(
        "--format",
        dest="log_format",
        default=default,
        metavar="NAME|FILE",
        help=f"the log's format: built-in ({', '.join(builtin_names())}) or a .toml format file"
        + ("" if default else "; default: the one the served version was trained with"),
    )


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """--url and how to reach a server that speaks TLS or restricts its repository API."""
    parser.add_argument(
        "--url",
        default=DEFAULT_URL,
        help="Triton's gRPC host:port; replicas as host:port,host:port or dns:///NAME:PORT "
        "(every address the name resolves to, as a Kubernetes headless Service gives)",
    )
    group = parser.add_argument_group("server security")
    group.add_argument("--tls-ca", type=Path, help="TLS: the CA (PEM) the server's cert is from")
    group.add_argument("--tls-cert", type=Path, help="mutual TLS: this client's certificate")
    group.add_argument("--tls-key", type=Path, help="mutual TLS: this client's key")
    group.add_argument(
        "--admin-key-file",
        type=Path,
        help="a file holding the admin key the server asks for to load and unload models",
    )


def client_security(args: argparse.Namespace):  # -> ClientSecurity (tritonclient on use)
    """The ClientSecurity the server arguments describe."""
    from client.triton_client import ClientSecurity

    admin_key = None
    if args.admin_key_file is not None:
        try:
            admin_key = args.admin_key_file.read_text().strip()
        except OSError as exc:
            raise BadArguments(f"--admin-key-file {args.admin_key_file}: {exc.strerror}") from None
        if not admin_key:
            raise BadArguments(f"--admin-key-file {args.admin_key_file} is empty")
    try:
        return ClientSecurity(args.tls_ca, args.tls_cert, args.tls_key, admin_key)
    except ValueError as exc:
        raise BadArguments(str(exc)) from None
