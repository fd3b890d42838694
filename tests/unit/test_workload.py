"""The embedded workload generator: HDFS-shaped lines with known truth, reproducible."""

from client.formats import builtin
from client.ops.workload import ANOMALY_TYPES, WorkloadConfig, generate_workload
from client.parsing import LogParser

HDFS = builtin("hdfs")


def test_the_same_seed_gives_the_same_log():
    config = WorkloadConfig(blocks=50, anomaly_rate=0.2, seed=3)
    assert generate_workload(config) == generate_workload(config)


def test_every_line_belongs_to_a_block_whose_truth_is_known():
    workload = generate_workload(WorkloadConfig(blocks=200, anomaly_rate=0.3, seed=1))
    parser = LogParser(HDFS)
    seen = set()
    for i, line in enumerate(workload.lines):
        parsed = parser.parse(line, i)
        seen.update(HDFS.sessions(parsed))
    assert parser.stats.malformed_total == 0
    assert seen == set(workload.truth)
    kinds = {k for k in workload.truth.values() if k}
    assert kinds <= set(ANOMALY_TYPES) and len(kinds) >= 3
    assert 0.15 < len(workload.anomalous_blocks) / 200 < 0.45


def test_normal_workloads_have_no_anomalies_and_malformed_lines_are_mixed_in():
    workload = generate_workload(WorkloadConfig(blocks=30, anomaly_rate=0.0, malformed_lines=4))
    assert not workload.anomalous_blocks
    parser = LogParser(HDFS)
    for i, line in enumerate(workload.lines):
        parser.parse(line, i)
    assert parser.stats.malformed_total == 4


def test_each_anomalous_block_says_where_it_departs_from_a_normal_life():
    workload = generate_workload(WorkloadConfig(blocks=300, anomaly_rate=0.5, seed=5))
    assert set(workload.fault_at) == workload.anomalous_blocks
    contents: dict[str, list[str]] = {}
    parser = LogParser(HDFS)
    for i, line in enumerate(workload.lines):
        parsed = parser.parse(line, i)
        for block in HDFS.sessions(parsed):
            contents.setdefault(block, []).append(parsed.content)
    departs = {
        "write_exception": "received exception",
        "delete_before_store": "NameSystem.delete",
        "replication_timeout": "timed out",
        "redundant_store": "addStoredBlock",
        "slow_transfer": "PacketResponder",
    }
    for block, at in workload.fault_at.items():
        kind, lines = workload.truth[block], contents[block]
        if kind == "truncated":
            assert at == len(lines)  # its end comes where the writes should
            continue
        assert departs[kind] in lines[at], (kind, lines[at])
        if kind == "redundant_store":
            assert (
                "addStoredBlock" in lines[at - 1]
                and lines[at - 1].split()[4:6] == lines[at].split()[4:6]
            )  # the same replica stored twice
