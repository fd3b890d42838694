"""An HDFS-like workload with known truth, so the demo and tests need no outside data.

Each block goes through a life cycle modelled on real HDFS logs (allocate, receive on each
replica, packet responders, stored in the block map, optional reads and verification, deletion).
Blocks' events are merged by time, so sessions interleave as in a real log. A chosen fraction of
blocks gets one injected anomaly; ``truth`` says which and of what type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

BLOCK_SIZE = 67108864
ANOMALY_TYPES = (
    "write_exception",  # a replica's write fails: exception lines never seen in normal data
    "truncated",  # the block's life stops after data was received: nothing stored
    "redundant_store",  # the block map is updated twice for one replica
    "delete_before_store",  # the block is deleted before its replicas were stored (order)
    "replication_timeout",  # replication times out and is re-asked
    "slow_transfer",  # a performance anomaly: the write takes `slowdown` times longer, same keys
)


@dataclass(frozen=True)
class WorkloadConfig:
    blocks: int = 1000
    anomaly_rate: float = 0.05
    seed: int = 0
    malformed_lines: int = 0  # garbage lines mixed in (empty, binary, invalid UTF-8, 1 MB long)
    slowdown: float = 10.0  # how much longer a slow_transfer block takes to write
    anomaly_types: tuple[str, ...] = ANOMALY_TYPES  # which types to inject
    start: datetime = datetime(2008, 11, 9, 20, 36, 15)
    block_interval_s: float = 2.0  # mean seconds between two new blocks: how busy the cluster is


@dataclass
class Workload:
    lines: list[bytes]
    truth: dict[str, str | None] = field(default_factory=dict)  # block id -> anomaly type
    # Anomalous block -> the position in its session (0-based key index; its length for a
    # block cut short: the end) of the first line where it departs from a normal life.
    fault_at: dict[str, int] = field(default_factory=dict)

    @property
    def anomalous_blocks(self) -> set[str]:
        return {b for b, kind in self.truth.items() if kind}


def _ip(rng: np.random.Generator) -> str:
    return f"10.251.{rng.integers(0, 256)}.{rng.integers(1, 255)}"


def _line(when: datetime, pid: int, level: str, component: str, content: str) -> str:
    return f"{when:%y%m%d %H%M%S} {pid} {level} {component}: {content}"


def _block_events(
    rng: np.random.Generator,
    block: str,
    start: float,
    anomaly: str | None,
    slowdown: float,
    fault: list[int],
) -> list[tuple[float, str, str, str]]:
    """(seconds, level, component, content) of one block's life; where an anomaly departs
    from a normal life is appended to ``fault`` (its event's index)."""
    replicas = 3 if rng.random() < 0.9 else 2
    nodes = [_ip(rng) for _ in range(replicas)]
    client = _ip(rng)
    task = rng.integers(0, 2000)
    t = start
    events: list[tuple[float, str, str, str]] = []

    def add(dt: float, level: str, component: str, content: str) -> None:
        nonlocal t
        t += dt
        events.append((t, level, component, content))

    allocate = (
        f"BLOCK* NameSystem.allocateBlock: /user/root/rand/_temporary/"
        f"_task_200811092030_0001_m_{task:06d}_0/part-{task:05d}. {block}"
    )
    allocate_first = rng.random() < 0.5
    if allocate_first:
        add(0.0, "INFO", "dfs.FSNamesystem", allocate)
    for node in nodes:
        add(
            rng.exponential(0.3),
            "INFO",
            "dfs.DataNode$DataXceiver",
            f"Receiving block {block} src: /{client}:{rng.integers(30000, 60000)} "
            f"dest: /{node}:50010",
        )
    if not allocate_first:
        add(rng.exponential(0.3), "INFO", "dfs.FSNamesystem", allocate)
    if anomaly == "truncated":
        fault.append(len(events))  # the end comes where the writes should
        return events
    if anomaly == "delete_before_store":
        fault.append(len(events))
        add(
            rng.exponential(1.0),
            "INFO",
            "dfs.FSNamesystem",
            f"BLOCK* NameSystem.delete: {block} is added to invalidSet of {nodes[0]}:50010",
        )
    failed = replicas - 1 if anomaly == "write_exception" else None
    transfer = rng.gamma(4.0, 2.0)  # seconds to write one block
    if anomaly == "slow_transfer":
        transfer *= slowdown
    for i, node in enumerate(nodes):
        if i == failed:
            fault.append(len(events))
            add(
                transfer,
                "INFO",
                "dfs.DataNode$DataXceiver",
                f"writeBlock {block} received exception java.io.IOException: "
                "Connection reset by peer",
            )
            add(
                rng.exponential(0.2),
                "INFO",
                "dfs.DataNode$PacketResponder",
                f"PacketResponder {i} for block {block} Interrupted.",
            )
            continue
        if i == 0 and anomaly == "slow_transfer":
            fault.append(len(events))  # the gap before the first responder is the slow one
        add(
            transfer if i == 0 else rng.exponential(0.2),
            "INFO",
            "dfs.DataNode$PacketResponder",
            f"PacketResponder {replicas - 1 - i} for block {block} terminating",
        )
        add(
            rng.exponential(0.05),
            "INFO",
            "dfs.DataNode$PacketResponder",
            f"Received block {block} of size {BLOCK_SIZE} from /{client}",
        )
        stores = 2 if anomaly == "redundant_store" and i == 0 else 1
        for store in range(stores):
            if store:
                fault.append(len(events))
            add(
                rng.exponential(0.1),
                "INFO",
                "dfs.FSNamesystem",
                f"BLOCK* NameSystem.addStoredBlock: blockMap updated: {node}:50010 "
                f"is added to {block} size {BLOCK_SIZE}",
            )
    if anomaly == "replication_timeout":
        fault.append(len(events))
        add(
            rng.exponential(300.0),
            "WARN",
            "dfs.PendingReplicationMonitor",
            f"PendingReplicationMonitor timed out block {block}",
        )
        add(
            rng.exponential(2.0),
            "INFO",
            "dfs.FSNamesystem",
            f"BLOCK* ask {nodes[0]}:50010 to replicate {block} to datanode(s) {_ip(rng)}:50010",
        )
    if anomaly is None and rng.random() < 0.1:
        _re_replicate(rng, block, nodes, add)
    for _ in range(rng.poisson(0.6)):
        reader = _ip(rng)
        add(
            rng.exponential(120.0),
            "INFO",
            "dfs.DataNode$DataXceiver",
            f"{rng.choice(nodes)}:50010 Served block {block} to /{reader}",
        )
        if rng.random() < 0.1:  # readers that go away mid-transfer are routine in HDFS
            add(
                rng.exponential(0.5),
                "WARN",
                "dfs.DataNode$DataXceiver",
                f"{rng.choice(nodes)}:50010:Got exception while serving {block} to /{reader}:",
            )
    if rng.random() < 0.3:
        add(
            rng.exponential(600.0),
            "INFO",
            "dfs.DataBlockScanner",
            f"Verification succeeded for {block}",
        )
    if rng.random() < 0.7 and anomaly != "delete_before_store":
        t += rng.exponential(900.0)
        for node in nodes:
            add(
                rng.exponential(0.5),
                "INFO",
                "dfs.FSNamesystem",
                f"BLOCK* NameSystem.delete: {block} is added to invalidSet of {node}:50010",
            )
        for _ in nodes:
            add(
                rng.exponential(2.0),
                "INFO",
                "dfs.FSDataset",
                f"Deleting block {block} file /mnt/hadoop/dfs/data/current/"
                f"subdir{rng.integers(0, 64)}/{block}",
            )
    return events


def _re_replicate(rng: np.random.Generator, block: str, nodes: list[str], add) -> None:
    """A normal path: the namenode asks a datanode to copy the block to a new one."""
    source, target = nodes[0], _ip(rng)
    add(
        rng.exponential(60.0),
        "INFO",
        "dfs.FSNamesystem",
        f"BLOCK* ask {source}:50010 to replicate {block} to datanode(s) {target}:50010",
    )
    add(
        rng.exponential(1.0),
        "INFO",
        "dfs.DataNode",
        f"{source}:50010 Starting thread to transfer block {block} to {target}:50010",
    )
    add(
        rng.exponential(0.2),
        "INFO",
        "dfs.DataNode$DataXceiver",
        f"Receiving block {block} src: /{source}:{rng.integers(30000, 60000)} "
        f"dest: /{target}:50010",
    )
    add(
        rng.exponential(2.0),
        "INFO",
        "dfs.DataNode$DataXceiver",
        f"Received block {block} src: /{source}:{rng.integers(30000, 60000)} "
        f"dest: /{target}:50010 of size {BLOCK_SIZE}",
    )
    add(
        rng.exponential(0.1),
        "INFO",
        "dfs.DataNode$DataTransfer",
        f"{source}:50010:Transmitted block {block} to /{target}:50010",
    )
    add(
        rng.exponential(0.1),
        "INFO",
        "dfs.FSNamesystem",
        f"BLOCK* NameSystem.addStoredBlock: blockMap updated: {target}:50010 "
        f"is added to {block} size {BLOCK_SIZE}",
    )


def _malformed(rng: np.random.Generator, count: int) -> list[bytes]:
    kinds = [
        b"",
        bytes(rng.integers(0, 256, 64, dtype=np.uint8)),
        b"081109 203615 \xff\xfe bad",
        b"x" * (1024 * 1024),
    ]
    return [kinds[i % len(kinds)] for i in range(count)]


def generate_workload(config: WorkloadConfig) -> Workload:
    """Raw HDFS-like lines (bytes, no newline) and the truth for every block."""
    rng = np.random.default_rng(config.seed)
    events: list[tuple[float, int, str, str, str]] = []
    truth: dict[str, str | None] = {}
    fault_at: dict[str, int] = {}
    span = config.blocks * config.block_interval_s
    for _ in range(config.blocks):
        block = f"blk_{int(rng.integers(-(2**62), 2**62))}"
        anomaly = (
            str(rng.choice(config.anomaly_types)) if rng.random() < config.anomaly_rate else None
        )
        truth[block] = anomaly
        pid = int(rng.integers(10, 30000))
        fault: list[int] = []
        for t, level, component, content in _block_events(
            rng, block, rng.uniform(0, span), anomaly, config.slowdown, fault
        ):
            events.append((t, pid, level, component, content))
        if fault:
            fault_at[block] = fault[0]
    events.sort(key=lambda e: e[0])
    lines = [
        _line(config.start + timedelta(seconds=t), pid, level, comp, content).encode()
        for t, pid, level, comp, content in events
    ]
    for garbage in _malformed(rng, config.malformed_lines):
        lines.insert(int(rng.integers(0, len(lines) + 1)), garbage)
    return Workload(lines=lines, truth=truth, fault_at=fault_at)
