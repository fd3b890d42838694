"""Argument types and defaults the command groups share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

DEFAULT_STORE = Path("state/feedback.sqlite")
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
