"""The log formats the client reads: header layout, clock, and what a session is.

HDFS: a session is a block (``blk_...``); a line naming several blocks belongs to each, as in
DeepLog's preprocessing. OpenStack: a session is a VM instance (``[instance: <uuid>]``); lines
naming none (API requests, audits) belong to the stream of their source log file and component
(the compute API and the metadata API are two servers with their own request rates).
BGL: no session ids; a node's messages form its stream, and ASGNet reads fixed windows of lines.
The first field is loghub's label: ``-`` for a normal message, else its alert category.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from client.parsing import LogFormat, ParsedLine

HDFS_BLOCK = re.compile(r"blk_-?\d+")
OPENSTACK_INSTANCE = re.compile(r"\[instance: ([0-9a-f-]{36})\]")


def hdfs_session_ids(line: ParsedLine) -> list[str]:
    """Block ids the line mentions, each once, in order of appearance."""
    return list(dict.fromkeys(HDFS_BLOCK.findall(line.content)))


def openstack_session_ids(line: ParsedLine) -> list[str]:
    instance = OPENSTACK_INSTANCE.search(line.content)
    if instance:
        return [instance.group(1)]
    return [f"stream:{line.header['logrecord'].split('.')[0]}:{line.header['component']}"]


def _clock(layout: str, fields: tuple[str, ...] = ("date", "time")):
    """Seconds since the epoch from the header's date and time fields (UTC: logs carry no zone).
    Consecutive lines mostly share a timestamp, so the last one read is remembered."""
    last: list = [None, 0.0]

    def clock(header: dict[str, str]) -> float:
        text = " ".join(header[f] for f in fields)
        if text != last[0]:
            when = datetime.strptime(text, layout).replace(tzinfo=timezone.utc).timestamp()
            last[0], last[1] = text, when
        return last[1]

    return clock


HDFS_FORMAT = LogFormat(
    "hdfs",
    re.compile(
        r"^(?P<date>\d{6}) (?P<time>\d{6}) (?P<pid>\d+) (?P<level>[A-Z]+) "
        r"(?P<component>[^\s:]+): (?P<content>.*)$"
    ),
    clock=_clock("%y%m%d %H%M%S"),
    sessions=hdfs_session_ids,
    clock_resolution=1.0,
    # A block is written in seconds, read for minutes, verified and deleted up to hours later:
    # a shorter quiet time would check a block's deletion as a session of its own.
    session_idle_s=7200.0,
)

OPENSTACK_FORMAT = LogFormat(
    "openstack",
    re.compile(
        r"^(?P<logrecord>\S+) (?P<date>\d{4}-\d{2}-\d{2}) (?P<time>\d{2}:\d{2}:\d{2}\.\d+) "
        r"(?P<pid>\d+) (?P<level>[A-Z]+) (?P<component>\S+) \[(?P<addr>[^\]]*)\] (?P<content>.*)$"
    ),
    clock=_clock("%Y-%m-%d %H:%M:%S.%f"),
    sessions=openstack_session_ids,
    clock_resolution=0.001,
    session_idle_s=600.0,
)

BGL_FORMAT = LogFormat(
    "bgl",
    re.compile(
        r"^(?P<label>\S+) (?P<timestamp>\d+) (?P<date>\d{4}\.\d{2}\.\d{2}) (?P<node>\S+) "
        r"(?P<time>\d{4}-\d{2}-\d{2}-\d{2}\.\d{2}\.\d{2}\.\d+) (?P<noderepeat>\S+) "
        r"(?P<type>\S+) (?P<component>\S+) (?P<level>\S+) (?P<content>.*)$"
    ),
    clock=_clock("%Y-%m-%d-%H.%M.%S.%f", fields=("time",)),  # time carries its own date
    sessions=lambda line: [line.header["node"]],
    clock_resolution=1e-6,
    session_idle_s=300.0,
)

FORMATS = {f.name: f for f in (HDFS_FORMAT, OPENSTACK_FORMAT, BGL_FORMAT)}
