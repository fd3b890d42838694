"""The session table, the stream's clock, checkpoints and the append-only outputs."""

import json
import math

import pytest

from client.checkpoint import Checkpoint, CheckpointError
from client.outputs import JsonLinesLog
from client.sessions import SessionTable, StreamClock
from client.sources import FileIdentity, Position


def test_sessions_idle_for_longer_than_the_idle_time_close_oldest_first():
    table = SessionTable(idle_s=10, max_open=100, max_keys=100)
    table.touch("a", 0, 1, 0.0, 0.0)
    table.touch("b", 10, 2, 0.0, 5.0)
    table.touch("a", 20, 3, 5.0, 8.0)  # a is active again: b is now the least recent
    assert [s.id for s in table.idle(15.0)] == []
    assert [s.id for s in table.idle(15.5)] == ["b"]
    assert [s.id for s in table.idle(30.0)] == ["a"]
    assert len(table) == 0


def test_beyond_the_open_bound_the_least_recently_active_close_first():
    table = SessionTable(idle_s=100, max_open=2, max_keys=100)
    for i, name in enumerate("abc"):
        table.touch(name, i, i + 1, 0.0, float(i))
    table.touch("a", 3, 4, 2.0, 3.0)
    assert [s.id for s in table.over_capacity()] == ["b"]
    assert sorted(s.id for s in table.sessions()) == ["a", "c"]


def test_a_session_part_starts_again_at_its_next_line_and_the_oldest_part_bounds_a_resume():
    table = SessionTable(idle_s=100, max_open=10, max_keys=2)
    entry, new = table.touch("a", 0, 1, -math.inf, 1.0)
    assert new and not table.full(entry)
    table.touch("b", 5, 2, 1.0, 1.0)
    entry, new = table.touch("a", 9, 3, 1.0, 2.0)
    assert not new and table.full(entry)
    table.next_part(entry, 12, 4, 2.0)
    assert table.oldest_part().id == "b"  # a's new part begins after line 3
    table.touch("a", 20, 7, 2.0, 3.0)
    assert (entry.part, entry.first_offset, entry.first_line, entry.keys) == (1, 20, 7, 1)


def test_the_stream_clock_is_event_time_and_a_quiet_followed_stream_runs_with_the_wall():
    clock = StreamClock()
    clock.observe(100.0)
    clock.observe(90.0)  # a line a little out of order does not turn it back
    assert clock.now() == 100.0
    followed = StreamClock(follow=True)
    followed.observe(100.0)
    assert 100.0 <= followed.now() < 101.0
    followed._wall -= 30  # 30 s of quiet
    assert followed.now() == pytest.approx(130.0, abs=0.5)


def test_a_checkpoint_round_trips_and_refuses_another_log(tmp_path):
    checkpoint = Checkpoint(
        source="app.log",
        log_format="hdfs",
        position=Position(120, 7, FileIdentity(1, 2)),
        clock=-math.inf,
        finished={"blk_1": 9},
        carried={"blk_2": {"part": 1, "keys": {"context": [3, 4], "position": 5}}},
        emitted=["abc"],
        alerts_bytes=42,
    )
    path = tmp_path / "run.checkpoint"
    checkpoint.save(path)
    assert Checkpoint.load(path, "app.log", "hdfs") == checkpoint
    with pytest.raises(CheckpointError, match=r"not of other\.log"):
        Checkpoint.load(path, "other.log", "hdfs")
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        Checkpoint.load(path, "app.log", "hdfs")


def test_an_output_file_torn_by_a_kill_is_cut_at_its_last_line_and_read_back(tmp_path):
    path = tmp_path / "alerts.jsonl"
    log = JsonLinesLog(path)
    log.write({"id": "a1"})
    middle = log.size()
    log.write({"id": "a2"})
    log.close()
    with open(path, "a") as out:
        out.write('{"id": "a3", "half')  # the kill came mid-write
    log = JsonLinesLog(path)
    assert log.reopen(since=middle) == {"a2"}
    assert log.reopen(since=None) == {"a1", "a2"}
    log.write({"id": "a3"})
    log.close()
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == [
        "a1",
        "a2",
        "a3",
    ]
