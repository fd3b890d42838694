"""Grouping parsed lines into sessions. HDFS: one session per block id (``blk_...``).

A line that names several blocks belongs to each of them, as in DeepLog's preprocessing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from client.parsing import ParsedLine

HDFS_BLOCK = re.compile(r"blk_-?\d+")


def hdfs_session_ids(line: ParsedLine) -> list[str]:
    """Block ids the line mentions, each once, in order of appearance."""
    return list(dict.fromkeys(HDFS_BLOCK.findall(line.content)))


def group_sessions(lines: Iterable[ParsedLine]) -> dict[str, list[ParsedLine]]:
    """Complete sessions of a finite stream, in order of first appearance."""
    sessions: dict[str, list[ParsedLine]] = {}
    for line in lines:
        for session_id in hdfs_session_ids(line):
            sessions.setdefault(session_id, []).append(line)
    return sessions
