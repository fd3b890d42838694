"""A worker that takes a partition over feeds the dead worker's redelivered lines in stream
order, whatever order JetStream sends them back in (the order their ack waits ran out)."""

from __future__ import annotations

import time
from types import SimpleNamespace

from client.bus_worker import Redeliveries


def _message(seq: int, copy: str = "first") -> SimpleNamespace:
    return SimpleNamespace(
        metadata=SimpleNamespace(sequence=SimpleNamespace(stream=seq)), copy=copy
    )


def test_redeliveries_are_released_in_stream_order_once_all_are_back():
    replay = Redeliveries(expected=4, upto=22, deadline=time.monotonic() + 60)
    replay.add([_message(10), _message(4)])
    assert not replay.complete()
    replay.add([_message(16), _message(25), _message(22)])  # 25: newer than the dead worker's
    assert replay.complete()
    assert [m.metadata.sequence.stream for m in replay.release()] == [4, 10, 16, 22, 25]
    assert replay.release() == []


def test_a_later_copy_of_a_message_replaces_the_earlier_one():
    replay = Redeliveries(expected=1, upto=3, deadline=time.monotonic() + 60)
    replay.add([_message(3, "first"), _message(3, "second")])
    assert [m.copy for m in replay.release()] == ["second"]


def test_the_deadline_releases_what_came_back_when_the_holder_acknowledged_some():
    replay = Redeliveries(expected=3, upto=9, deadline=time.monotonic() - 1)
    replay.add([_message(9), _message(2)])
    assert replay.complete()
    assert [m.metadata.sequence.stream for m in replay.release()] == [2, 9]
