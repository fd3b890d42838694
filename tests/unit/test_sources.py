"""Line sources: a file once, a stream, a file followed as it grows (tail -F)."""

import io
import os
import threading
import time
from dataclasses import dataclass

from client.sources import FileIdentity, FollowedFile, Position, read_file, read_stream


def test_a_file_is_read_with_offsets_that_point_at_each_line(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"one\ntwo\n\nlast without newline")
    records = list(read_file(log))
    assert [r.raw for r in records] == [b"one", b"two", b"", b"last without newline"]
    assert [r.line_no for r in records] == [1, 2, 3, 4]
    data = log.read_bytes()
    for r in records:
        assert data[r.offset : r.offset + len(r.raw)] == r.raw
    assert records[-1].end == len(data)


def test_reading_resumes_from_a_position(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"one\ntwo\nthree\n")
    first = list(read_file(log))
    rest = list(read_file(log, Position(first[0].end, first[0].line_no)))
    assert [(r.raw, r.line_no) for r in rest] == [(b"two", 2), (b"three", 3)]


def test_an_over_long_line_is_never_held_whole_and_is_handed_on_as_too_long(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"ok\n" + b"x" * 5000 + b"\nafter\n")
    records = list(read_file(log, max_bytes=100))
    assert [(r.raw, r.too_long) for r in records] == [
        (b"ok", False),
        (b"", True),
        (b"after", False),
    ]
    assert records[2].offset == 3 + 5001  # offsets still count the dropped bytes
    stream = list(read_stream(io.BytesIO(b"y" * 300), max_bytes=100))
    assert [(r.raw, r.too_long) for r in stream] == [(b"", True)]


@dataclass
class Following:
    follower: FollowedFile
    seen: list
    stop: threading.Event
    finished: threading.Event
    thread: threading.Thread

    def end(self) -> list[bytes]:
        """Say the file is finished, wait for the follower, return the lines it read."""
        self.finished.set()
        self.thread.join(5)
        return [r.raw for r in self.seen]


def _follow(path, **kwargs) -> Following:
    """A follower reading ``path`` in a thread."""
    stop, finished = threading.Event(), threading.Event()
    follower = FollowedFile(path, poll_s=0.01, finished=finished, **kwargs)
    seen: list = []

    def run():
        for record in follower.records(stop):
            if record is not None:
                seen.append(record)

    thread = threading.Thread(target=run)
    thread.start()
    return Following(follower, seen, stop, finished, thread)


def _wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_following_waits_for_the_file_and_for_each_line_to_be_complete(tmp_path):
    log = tmp_path / "app.log"
    run = _follow(log)
    time.sleep(0.05)
    with open(log, "ab") as out:
        out.write(b"first\nsec")
        out.flush()
        _wait_for(lambda: len(run.seen) == 1)
        time.sleep(0.05)
        assert len(run.seen) == 1  # "sec" is not a line yet
        out.write(b"ond\n")
        out.flush()
        _wait_for(lambda: len(run.seen) == 2)
    assert run.end() == [b"first", b"second"]
    assert run.follower.position.offset == len(b"first\nsecond\n")


def test_following_survives_rotation_and_truncation(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"a1\na2\n")
    run = _follow(log)
    _wait_for(lambda: len(run.seen) == 2)
    # logrotate's default: rename, then the application writes a new file of the same name.
    with open(log, "ab") as out:
        out.write(b"a3 written just before the rename\n")
    os.rename(log, tmp_path / "app.log.1")
    log.write_bytes(b"b1\n")
    _wait_for(lambda: len(run.seen) == 4)
    # copytruncate: the same file emptied in place, then written again.
    with open(log, "r+b") as out:
        out.truncate(0)
    time.sleep(0.1)
    log.write_bytes(b"c1\n")
    _wait_for(lambda: len(run.seen) == 5)
    assert run.end() == [b"a1", b"a2", b"a3 written just before the rename", b"b1", b"c1"]
    assert [r.line_no for r in run.seen] == [1, 2, 3, 4, 5]
    assert (run.follower.rotations, run.follower.truncations) == (1, 1)


def test_a_followed_file_resumes_at_its_position_unless_it_is_another_file(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"a1\na2\na3\n")
    first = list(read_file(log))
    position = Position(first[1].end, 2, FileIdentity.of(log.stat()))
    assert _follow(log, position=position).end() == [b"a3"]
    os.rename(log, tmp_path / "old.log")
    log.write_bytes(b"new1\nnew2\n")  # rotated while the reader was away: read from the top
    assert _follow(log, position=position).end() == [b"new1", b"new2"]


def test_stop_ends_a_follower_that_is_waiting(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"x\n")
    run = _follow(log)
    _wait_for(lambda: len(run.seen) == 1)
    run.stop.set()
    run.thread.join(5)
    assert not run.thread.is_alive()
    assert run.follower.lag_bytes() == 0
