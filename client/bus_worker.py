"""A detection worker on the log bus (``detect --source nats://...``): at-least-once.

Partitions are held by lease, in the bus's key-value bucket (``NAME_leases``): key
``p.<partition>`` names its worker, and is renewed every ``lease_s / 3``; the bucket's
time-to-live is ``lease_s``, so a worker that dies loses its partitions ``lease_s`` after its
last renewal. Every worker also keeps ``w.<id>`` alive there; each claims free partitions up to
its share (partitions / live workers, rounded up), so workers started together split them
and survivors take over a dead one's.

Each partition has one durable pull consumer (``detect-<partition>``). A message is
acknowledged only when every session its lines went into has had its verdict emitted and
published; until then it is kept "in progress" (JetStream's +WPI), so a long session does not
outlive the ack wait. A worker that takes over a partition whose consumer still has
unacknowledged messages waits one ``ack_wait_s`` first, for the dead worker's deliveries to
expire, and then gathers them before feeding any: JetStream redelivers them in the order their
waits ran out (the dead worker's last "in progress" pings), not in the stream's, and a session
rebuilt out of order is a different sequence of keys. They go to the engine in stream order,
then the newer lines. Alerts and
verdicts are published with their ids as ``Nats-Msg-Id``: a redelivered line finds the same
alert again and the findings stream keeps it once.

Left out, on purpose: a worker does not hand partitions to one that joins later (its open
sessions would have to move with them); a newcomer takes those of workers that stop or die.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import queue
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from client.alerts import AnyAlert, SessionVerdict, alert_record
from client.detection import PartResult
from client.log_bus import LINE_SLOTS, Bus, BusLayout, unpack
from client.outputs import Outputs

# Acknowledged stream sequences remembered, to drop a second copy of a message done here.
ACKED_REMEMBERED = 65_536


class _Recent:
    """The last ``size`` integers added, for membership."""

    def __init__(self, size: int) -> None:
        self._size, self._order, self._set = size, deque(), set()

    def add(self, value: int) -> None:
        if value in self._set:
            return
        self._order.append(value)
        self._set.add(value)
        if len(self._order) > self._size:
            self._set.discard(self._order.popleft())

    def __contains__(self, value: int) -> bool:
        return value in self._set


@dataclass(frozen=True)
class WorkerConfig:
    ack_wait_s: float = 30.0  # JetStream's ack wait: how long an unacknowledged line waits
    lease_s: float = 15.0  # how long a silent worker keeps its partitions
    fetch_batch: int = 32  # messages per pull
    inbox_messages: int = 256  # fetched, not yet fed: back-pressure on the pulls
    poll_s: float = 0.05  # a quiet bus: how often the engine's clock is looked at
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
    )


@dataclass
class BusOutputs:
    """Findings to the bus (buffered until the worker publishes them) and to ``inner``;
    the verdicts are what frees the lines behind them."""

    inner: Outputs
    findings: list[tuple[str, bytes, str]] = field(default_factory=list)  # subject, data, id
    done: list[tuple[str, int]] = field(default_factory=list)  # (session, last line) verdicted
    subjects: tuple[str, str] = ("", "")  # alerts, verdicts

    def alert(self, alert: AnyAlert, line: int) -> None:
        record = alert_record(alert)
        self.findings.append((self.subjects[0], _json(record), record["id"]))
        self.inner.alert(alert, line)

    def verdict(self, verdict: SessionVerdict, result: PartResult) -> None:
        record = verdict.record()
        self.findings.append((self.subjects[1], _json(record), verdict.id))
        self.done.append((verdict.session, verdict.last_line))
        self.inner.verdict(verdict, result)


def _json(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


@dataclass
class _Held:
    """A fetched message whose lines wait for verdicts."""

    msg: object  # nats.aio.msg.Msg
    waiting: set[str]


@dataclass
class WorkerStats:
    messages: int = 0
    redelivered: int = 0  # messages that came again (another worker's, or an expired wait)
    acked: int = 0
    findings_published: int = 0
    findings_duplicate: int = 0  # already on the findings stream: a replay, kept once
    partitions_taken: int = 0


class BusWorker:
    """Feeds the lines of the partitions it holds to ``feed(record, sessions)`` (the engine's)
    and acknowledges them as ``outputs`` reports verdicts."""

    def __init__(
        self,
        bus: Bus,
        layout: BusLayout,
        feed: Callable,
        tick: Callable[[], None],
        drain: Callable[[], None],
        outputs: BusOutputs,
        config: WorkerConfig = WorkerConfig(),
        say: Callable[[str], None] = lambda text: print(f"# {text}", file=sys.stderr),
    ) -> None:
        self.bus, self.layout, self.config = bus, layout, config
        self._feed, self._tick, self._drain, self.outputs = feed, tick, drain, outputs
        outputs.subjects = (bus.address.alerts, bus.address.verdicts)
        self.say = say
        self.stats = WorkerStats()
        self._inbox: queue.Queue = queue.Queue()
        self._held: dict[int, _Held] = {}  # stream sequence -> message
        self._messages_of: dict[str, deque[int]] = {}  # session -> sequences holding its lines
        self._acks: list[object] = []
        self._acked: _Recent = _Recent(ACKED_REMEMBERED)  # stream sequences acknowledged
        self._owned: dict[int, int] = {}  # partition -> lease revision
        self._tasks: dict[int, asyncio.Task] = {}
        self._stopping = False
        self._kv = None
        self._last_ping = time.monotonic()
        self._heartbeat: asyncio.Future | None = None

    # -- the main thread ---------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; then hand back what is not finished."""
        self.bus.run(self._start())
        try:
            while not stop.is_set():
                try:
                    batch = [self._inbox.get(timeout=self.config.poll_s)]
                except queue.Empty:
                    self._tick()
                    self._settle()
                    continue
                while len(batch) < self.config.fetch_batch:
                    try:
                        batch.append(self._inbox.get_nowait())
                    except queue.Empty:
                        break
                for msg in batch:
                    self._take(msg)
                self._tick()
                self._settle()
        finally:
            self._stopping = True
            self._drain()
            self._settle()
            self.bus.run(self._hand_back())

    @property
    def partitions(self) -> list[int]:
        return sorted(self._owned)

    @property
    def held(self) -> int:
        return len(self._held)

    def lag_messages(self) -> int:
        """Messages of the partitions held that were not delivered yet (from JetStream)."""
        return self.bus.run(self._lag(), timeout=10)

    async def _lag(self) -> int:
        address, pending = self.bus.address, 0
        for partition in list(self._owned):
            info = await self.bus.js.consumer_info(address.name, address.consumer(partition))
            pending += info.num_pending
        return pending

    def _take(self, msg) -> None:
        meta = msg.metadata
        seq = meta.sequence.stream
        self.stats.messages += 1
        if meta.num_delivered > 1:
            self.stats.redelivered += 1
        if seq in self._held:
            return  # ours already, its wait expired while we worked on it: nothing new
        if seq in self._acked:
            # Done here already (it waited in the inbox past its ack wait, or our ack was
            # lost): feeding it again would open its sessions a second time.
            self._acks.append(msg)
            return
        waiting: set[str] = set()
        for record, sessions in unpack(msg.data, msg.headers, seq):
            for session in self._feed(record, sessions):
                waiting.add(session)
                its = self._messages_of.setdefault(session, deque())
                if not its or its[-1] != seq:
                    its.append(seq)
        if waiting:
            self._held[seq] = _Held(msg, waiting)
        else:
            self._acks.append(msg)

    def _settle(self) -> None:
        """Publish the findings, then acknowledge the messages whose sessions are all
        verdicted (in this order: a line is let go only once what it led to is stored)."""
        if self.outputs.findings:
            findings, self.outputs.findings = self.outputs.findings, []
            duplicates = self.bus.run(self._publish(findings), timeout=None)
            self.stats.findings_published += len(findings)
            self.stats.findings_duplicate += duplicates
        for session, last_line in self.outputs.done:
            self._verdicted(session, last_line // LINE_SLOTS)
        self.outputs.done.clear()
        if self._acks:
            acks, self._acks = self._acks, []
            for msg in acks:
                self._acked.add(msg.metadata.sequence.stream)
            self.stats.acked += len(acks)
            self.bus.submit(_each(acks, "ack"))
        now = time.monotonic()
        if self._held and now - self._last_ping >= self.config.ack_wait_s / 3:
            self._last_ping = now
            self.bus.submit(_each([h.msg for h in self._held.values()], "in_progress"))

    def _verdicted(self, session: str, last_seq: int) -> None:
        its = self._messages_of.get(session)
        while its and its[0] <= last_seq:
            seq = its.popleft()
            held = self._held.get(seq)
            if held is None:
                continue
            held.waiting.discard(session)
            if not held.waiting:
                self._acks.append(self._held.pop(seq).msg)
        if its is not None and not its:
            del self._messages_of[session]

    async def _publish(self, findings: list[tuple[str, bytes, str]]) -> int:
        """Publish and wait for JetStream to store each; retried through an outage of the bus.
        Returns how many it already had (replays)."""
        from nats.errors import NoRespondersError, TimeoutError

        js, duplicates, delay = self.bus.js, 0, 0.2
        todo = findings
        while todo:
            answers = await asyncio.gather(
                *(js.publish(s, d, headers={"Nats-Msg-Id": i}) for s, d, i in todo),
                return_exceptions=True,
            )
            failed = []
            for finding, answer in zip(todo, answers, strict=True):
                if isinstance(answer, TimeoutError | NoRespondersError | ConnectionError):
                    failed.append(finding)
                elif isinstance(answer, BaseException):
                    raise answer
                else:
                    duplicates += bool(answer.duplicate)
            todo = failed
            if todo:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return duplicates

    # -- the bus's event loop ----------------------------------------------------------------

    async def _start(self) -> None:
        from nats.js.api import KeyValueConfig

        js = self.bus.js
        try:
            self._kv = await js.key_value(self.bus.address.leases)
        except Exception:  # not there yet: create it (another worker may race)
            self._kv = await js.create_key_value(
                KeyValueConfig(bucket=self.bus.address.leases, ttl=self.config.lease_s)
            )
        for partition in range(self.layout.partitions):
            await self._ensure_consumer(partition)
        await self._kv.put(self._worker_key, b"1")
        # Wait a renewal period before claiming, so workers started together see each other
        # and split the partitions instead of the first taking them all.
        await asyncio.sleep(self.config.lease_s / 3)
        await self._claim()
        self._heartbeat = asyncio.ensure_future(self._beat())

    @property
    def _worker_key(self) -> str:
        return f"w.{self.config.worker_id}"

    async def _ensure_consumer(self, partition: int) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        address = self.bus.address
        await self.bus.js.add_consumer(
            address.name,
            ConsumerConfig(
                durable_name=address.consumer(partition),
                filter_subject=address.subject(partition),
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.config.ack_wait_s,
                max_ack_pending=-1,  # a worker holds lines for as long as their sessions last
            ),
        )

    async def _beat(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.lease_s / 3)
            if self._stopping:
                return
            try:
                await self._kv.put(self._worker_key, b"1")
                await self._renew()
                await self._claim()
            except Exception as exc:  # the bus is down: try at the next beat
                self.say(f"lease renewal failed ({exc}); retrying")

    async def _renew(self) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        for partition, revision in list(self._owned.items()):
            key = f"p.{partition:03d}"
            try:
                self._owned[partition] = await self._kv.update(
                    key, self.config.worker_id.encode(), last=revision
                )
            except KeyWrongLastSequenceError:
                # Our lease ran out and another worker took the partition: stop pulling it;
                # what we hold of it comes back to that worker when its wait expires.
                self._owned.pop(partition)
                task = self._tasks.pop(partition, None)
                if task is not None:
                    task.cancel()
                self.say(f"lost partition {partition} to another worker (lease expired)")

    async def _claim(self) -> None:
        from nats.js.errors import KeyWrongLastSequenceError, NoKeysError

        try:
            keys = await self._kv.keys()
        except NoKeysError:
            keys = []
        workers = max(sum(1 for k in keys if k.startswith("w.")), 1)
        share = math.ceil(self.layout.partitions / workers)
        held = {int(k[2:]) for k in keys if k.startswith("p.")}
        for partition in range(self.layout.partitions):
            if len(self._owned) >= share:
                return
            if partition in held or partition in self._owned:
                continue
            try:
                revision = await self._kv.create(
                    f"p.{partition:03d}", self.config.worker_id.encode()
                )
            except KeyWrongLastSequenceError:
                continue  # another worker was quicker
            self._owned[partition] = revision
            self.stats.partitions_taken += 1
            self._tasks[partition] = asyncio.ensure_future(self._pull(partition))

    async def _pull(self, partition: int) -> None:
        from nats.errors import TimeoutError

        address = self.bus.address
        info = await self.bus.js.consumer_info(address.name, address.consumer(partition))
        replay = None
        if info.num_ack_pending:
            # Another worker's lines are out: let their wait expire, so they come back first.
            await asyncio.sleep(self.config.ack_wait_s)
            replay = Redeliveries(
                info.num_ack_pending,
                info.delivered.stream_seq,
                time.monotonic() + self.config.ack_wait_s / 2,
            )
        subscription = await self.bus.js.pull_subscribe_bind(
            address.consumer(partition), address.name
        )
        try:
            while not self._stopping and partition in self._owned:
                if self._inbox.qsize() >= self.config.inbox_messages:
                    await asyncio.sleep(0.01)
                    continue
                try:
                    messages = await subscription.fetch(self.config.fetch_batch, timeout=1.0)
                except TimeoutError:
                    messages = []
                except Exception:  # the bus reconnects; pull again after it
                    await asyncio.sleep(0.5)
                    continue
                if replay is not None:
                    replay.add(messages)
                    messages = []
                    if replay.complete():
                        messages, replay = replay.release(), None
                for message in messages:
                    self._inbox.put_nowait(message)
        finally:
            if replay is not None:
                await asyncio.gather(*(m.nak() for m in replay.release()), return_exceptions=True)
            await subscription.unsubscribe()

    async def _hand_back(self) -> None:
        """Stopping: lines whose sessions are still open go back to the stream at once (the
        next holder of their partition rebuilds those sessions), leases are let go."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await asyncio.gather(*(h.msg.nak() for h in self._held.values()), return_exceptions=True)
        while not self._inbox.empty():
            await self._inbox.get_nowait().nak()
        if self._kv is not None:
            for partition in list(self._owned):
                await self._kv.delete(f"p.{partition:03d}")
            await self._kv.delete(self._worker_key)
        self._owned.clear()


@dataclass
class Redeliveries:
    """A taken-over partition's redeliveries, gathered to be fed in stream order: the
    ``expected`` messages the last holder left unacknowledged (all at or below ``upto``, the
    last it was delivered), and whatever newer came with them. Complete when all are here, or
    at ``deadline`` (the holder was alive after all and acknowledged some); early enough that
    what waits here is not redelivered again."""

    expected: int
    upto: int
    deadline: float
    gathered: dict[int, object] = field(default_factory=dict)  # stream sequence -> message

    def add(self, messages: list) -> None:
        for message in messages:
            self.gathered[message.metadata.sequence.stream] = message  # a later copy wins

    def complete(self) -> bool:
        back = sum(1 for seq in self.gathered if seq <= self.upto)
        return back >= self.expected or time.monotonic() >= self.deadline

    def release(self) -> list:
        messages = [self.gathered[seq] for seq in sorted(self.gathered)]
        self.gathered = {}
        return messages


async def _each(messages: list, action: str) -> None:
    """``ack`` or ``in_progress`` every message; a lost one is redelivered (at-least-once)."""
    await asyncio.gather(*(getattr(m, action)() for m in messages), return_exceptions=True)
