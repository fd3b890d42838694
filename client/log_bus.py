"""The log bus: NATS JetStream, the way its users run it, between log shippers and workers.

Layout of one bus named by ``nats://host:port/NAME`` (NAME defaults to ``logs``):
- stream ``NAME`` holds the lines, on subjects ``NAME.lines.<partition>``: a line goes to the
  partition of each session it names (``partition_of``: a hash of the session id), so one
  session's lines always reach the same worker. Its description records the partition count
  and the log format, and publishers and workers refuse a bus of another layout.
- A message carries up to ``MAX_BATCH`` lines of one partition (NATS costs per message, not per
  byte: one line per message caps a Python publisher near 5k lines/s), with a header naming the
  sessions of each line, so a worker never has to work out windows or ids it cannot see.
- stream ``NAME_findings`` holds what workers find, on ``NAME.alerts`` and ``NAME.verdicts``,
  each message with ``Nats-Msg-Id`` set to the alert's (verdict's) id: a line redelivered to
  another worker finds the same alert again and JetStream keeps it once.
- key-value bucket ``NAME_leases``: which worker holds which partition, and which are alive
  (``client/bus_worker.py``).

``Bus`` runs nats-py's asyncio client on a thread of its own, so the synchronous detection
engine calls it like any other client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import zlib
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from client.formats import LogFormat
from client.parsing import ParsedLine
from client.sources import Record

DEFAULT_STREAM = "logs"
DEFAULT_PARTITIONS = 16
MAX_BATCH = 256  # lines in one message
LINE_SLOTS = 1000  # a worker numbers line i of message seq as seq * LINE_SLOTS + i
SESSIONS_HEADER = "Logad-Sessions"  # JSON: per line, the sessions it is in (this partition's)
TOO_LONG_HEADER = "Logad-Too-Long"  # JSON: indexes of lines dropped for their length
DUPLICATE_WINDOW_S = 600.0  # how long JetStream remembers a finding's id

T = TypeVar("T")


class BusError(RuntimeError):
    """A bus that cannot be used: unreachable, or laid out for another format or partition
    count. One line naming what to do."""


@dataclass(frozen=True)
class BusAddress:
    server: str  # nats://host:port
    name: str  # the lines stream; the other names derive from it

    @classmethod
    def parse(cls, url: str) -> BusAddress:
        parts = urlsplit(url)
        if parts.scheme != "nats" or not parts.hostname:
            raise BusError(f"{url}: a log bus is nats://HOST:PORT[/STREAM]")
        name = parts.path.strip("/") or DEFAULT_STREAM
        if not name.replace("_", "").replace("-", "").isalnum():
            raise BusError(f"{url}: a stream name is letters, digits, - and _ ({name!r})")
        return cls(f"nats://{parts.hostname}:{parts.port or 4222}", name)

    def subject(self, partition: int) -> str:
        return f"{self.name}.lines.{partition:03d}"

    @property
    def alerts(self) -> str:
        return f"{self.name}.alerts"

    @property
    def verdicts(self) -> str:
        return f"{self.name}.verdicts"

    @property
    def findings(self) -> str:
        return f"{self.name}_findings"

    @property
    def leases(self) -> str:
        return f"{self.name}_leases"

    def consumer(self, partition: int) -> str:
        return f"detect-{partition:03d}"


@dataclass(frozen=True)
class BusLayout:
    """What every publisher and worker of one bus must agree on."""

    partitions: int
    log_format: str
    format_digest: str

    def describe(self) -> str:
        return json.dumps({"logad": asdict(self)})

    @classmethod
    def of(cls, description: str | None) -> BusLayout | None:
        try:
            return cls(**json.loads(description or "")["logad"])
        except (ValueError, KeyError, TypeError):
            return None


def partition_of(session: str, partitions: int) -> int:
    """The partition of a session id: stable across processes and hosts (not ``hash``)."""
    return zlib.crc32(session.encode("utf-8", "surrogatepass")) % partitions


@dataclass(slots=True)
class LineBatch:
    """Lines of one partition waiting to be published together."""

    lines: list[bytes] = field(default_factory=list)
    sessions: list[list[str]] = field(default_factory=list)
    too_long: list[int] = field(default_factory=list)
    since: float = 0.0  # monotonic time of its first line

    def add(self, raw: bytes, sessions: list[str], too_long: bool) -> None:
        if not self.lines:
            self.since = time.monotonic()
        if too_long:
            self.too_long.append(len(self.lines))
        self.lines.append(raw)
        self.sessions.append(sessions)

    def message(self) -> tuple[bytes, dict[str, str]]:
        headers = {SESSIONS_HEADER: json.dumps(self.sessions, ensure_ascii=False)}
        if self.too_long:
            headers[TOO_LONG_HEADER] = json.dumps(self.too_long)
        return b"\n".join(self.lines), headers


def unpack(
    payload: bytes, headers: dict[str, str] | None, seq: int
) -> list[tuple[Record, list[str]]]:
    """The lines of one message as records numbered from its stream sequence, each with the
    sessions the publisher placed it in."""
    headers = headers or {}
    sessions = json.loads(headers.get(SESSIONS_HEADER, "[]"))
    too_long = set(json.loads(headers.get(TOO_LONG_HEADER, "[]")))
    lines = payload.split(b"\n") if sessions else []
    if len(lines) != len(sessions):
        raise BusError(f"message {seq}: {len(lines)} lines but {len(sessions)} session lists")
    base = seq * LINE_SLOTS
    return [
        (Record(b"" if i in too_long else raw, base + i, 0, 0, i in too_long), sessions[i])
        for i, raw in enumerate(lines)
    ]


def line_sessions(log_format: LogFormat, record: Record) -> list[str]:
    """The sessions a raw line names, read the way the detection engine reads them; [] for a
    line that names none or is malformed (it still travels, and the worker counts it)."""
    if record.too_long:
        return []
    text = record.raw.decode("utf-8", "replace")
    split = log_format.split(text)
    if split is None:
        return []
    header, content = split
    try:
        when = log_format.clock(header)
    except (ValueError, KeyError, OverflowError):
        return []
    return log_format.sessions(ParsedLine(record.line_no, -1, "", header, content), when)


class Bus:
    """One connection to NATS, driven from synchronous code: ``run(coroutine)`` runs it on the
    connection's own event loop thread and returns its result."""

    def __init__(self, address: BusAddress, connect_timeout_s: float = 10.0) -> None:
        import nats

        self.address = address
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="nats")
        self._thread.start()

        async def connect():
            return await nats.connect(
                address.server,
                connect_timeout=connect_timeout_s,
                allow_reconnect=True,
                max_reconnect_attempts=-1,  # an outage of the bus is waited out
                reconnect_time_wait=0.5,
            )

        try:
            self.nc = self.run(connect(), timeout=connect_timeout_s + 5)
        except Exception as exc:  # nats raises several kinds; one line for all
            self._stop_loop()
            raise BusError(f"cannot reach the log bus at {address.server}: {exc}") from None
        self.js = self.nc.jetstream()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run without waiting for the result (acknowledgements)."""
        asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def ensure_streams(self, layout: BusLayout) -> BusLayout:
        """Create the bus's streams where missing; refuse one laid out otherwise."""
        return self.run(self._ensure(layout))

    async def _ensure(self, wanted: BusLayout) -> BusLayout:
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        address = self.address
        try:
            info = await self.js.stream_info(address.name)
        except NotFoundError:
            await self.js.add_stream(
                StreamConfig(
                    name=address.name,
                    subjects=[f"{address.name}.lines.*"],
                    description=wanted.describe(),
                    storage=StorageType.FILE,
                )
            )
            found = wanted
        else:
            found = BusLayout.of(info.config.description)
            if found is None:
                raise BusError(
                    f"stream {address.name} on {address.server} is not a logad log bus: "
                    "name another stream (nats://HOST:PORT/STREAM)"
                )
        if (found.log_format, found.format_digest) != (wanted.log_format, wanted.format_digest):
            raise BusError(
                f"stream {address.name} carries {found.log_format} lines "
                f"({found.format_digest}), not {wanted.log_format} ({wanted.format_digest}): "
                "name another stream"
            )
        try:
            await self.js.stream_info(address.findings)
        except NotFoundError:
            await self.js.add_stream(
                StreamConfig(
                    name=address.findings,
                    subjects=[address.alerts, address.verdicts],
                    duplicate_window=DUPLICATE_WINDOW_S,
                    storage=StorageType.FILE,
                )
            )
        return found

    def messages(self, stream: str) -> list:
        """Every message a stream holds now, oldest first (an ordered consumer of its own):
        how a reader of the findings, or a test, sees what workers published."""
        return self.run(self._messages(stream), timeout=None)

    async def _messages(self, stream: str) -> list:
        info = await self.js.stream_info(stream)
        subjects = info.config.subjects or [">"]
        got: list = []
        for subject in subjects:
            state = (await self.js.stream_info(stream, subjects_filter=subject)).state
            count = sum((state.subjects or {}).values())
            if not count:
                continue
            sub = await self.js.subscribe(subject, stream=stream, ordered_consumer=True)
            for _ in range(count):
                got.append(await sub.next_msg(timeout=10))
            await sub.unsubscribe()
        return sorted(got, key=lambda m: m.metadata.sequence.stream)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a broken connection: nothing left to save
            self.run(self.nc.drain(), timeout=10)
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


@dataclass
class PublishSummary:
    lines: int = 0
    messages: int = 0
    copies: int = 0  # line copies: a line naming sessions of several partitions goes to each
    without_session: int = 0  # malformed or naming no session: sent on, counted by the worker

    def line(self) -> str:
        return (
            f"{self.lines} lines published in {self.messages} messages "
            f"({self.copies} line copies; {self.without_session} name no session)"
        )


class LinePublisher:
    """Lines into the bus, each to the partition of each of its sessions, in messages of up to
    ``MAX_BATCH`` lines; a partition's lines wait at most ``linger_s`` for company."""

    def __init__(
        self, bus: Bus, layout: BusLayout, log_format: LogFormat, linger_s: float = 0.05
    ) -> None:
        self.bus, self.layout, self.format, self.linger_s = bus, layout, log_format, linger_s
        self._batches: dict[int, LineBatch] = {}
        self.summary = PublishSummary()

    def add(self, record: Record) -> None:
        sessions = line_sessions(self.format, record)
        self.summary.lines += 1
        if not sessions:
            self.summary.without_session += 1
        by_partition: dict[int, list[str]] = {}
        for session in sessions:
            by_partition.setdefault(partition_of(session, self.layout.partitions), []).append(
                session
            )
        for partition, its in by_partition.items() or {0: []}.items():
            batch = self._batches.setdefault(partition, LineBatch())
            batch.add(record.raw, its, record.too_long)
            self.summary.copies += 1
            if len(batch.lines) >= MAX_BATCH:
                self._send([partition])

    def tick(self) -> None:
        """Send the batches that waited ``linger_s``."""
        now = time.monotonic()
        self._send([p for p, b in self._batches.items() if now - b.since >= self.linger_s])

    def flush(self) -> None:
        self._send(list(self._batches))

    def _send(self, partitions: list[int]) -> None:
        messages = []
        for partition in partitions:
            batch = self._batches.pop(partition, None)
            if batch is not None and batch.lines:
                messages.append((self.bus.address.subject(partition), *batch.message()))
        if messages:
            self.bus.run(self._publish(messages))
            self.summary.messages += len(messages)

    async def _publish(self, messages: list[tuple[str, bytes, dict[str, str]]]) -> None:
        # Each publish waits for JetStream's acknowledgement: a line is on disk before the
        # publisher reads on (and an outage of the bus holds the publisher, losing nothing).
        await asyncio.gather(
            *(self.bus.js.publish(subject, data, headers=h) for subject, data, h in messages)
        )
