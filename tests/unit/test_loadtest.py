"""The load test's driver and arithmetic, with sends that answer as a server would (no server
here; tests/integration/test_loadtest_on_server.py loads a real one): open-loop schedule, shedding,
errors by kind, unanswered requests, the time series, and reading a process's memory."""

import math
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from benchmarks.loadtest import (
    SHED,
    UNANSWERED,
    LoadConfig,
    Outcome,
    Progress,
    drive,
    summarise,
    time_series,
)
from benchmarks.process_memory import Memory, descendants, listening_pid, memory_of, rss_bytes
from benchmarks.requests import Workload


def answer_after(delay_s: float, error: str | None = None):
    def send(i, done):
        threading.Timer(delay_s, done, args=(error,)).start()

    return send


def test_requests_are_sent_open_loop_at_the_rate_and_all_answered():
    outcomes = drive(answer_after(0.001), count=40, rate=200.0, max_in_flight=100, drain_s=2.0)
    assert [o.due for o in outcomes] == [i / 200.0 for i in range(40)]
    assert all(o.ok for o in outcomes)
    assert all(o.sent >= o.due for o in outcomes), "never sent ahead of schedule"
    assert all(o.latency_s >= 0.001 for o in outcomes), "latency counts from when it was due"


def test_a_slow_server_sheds_requests_beyond_the_in_flight_bound_and_counts_them():
    busy = 0
    most = 0
    lock = threading.Lock()

    def send(i, done):
        nonlocal busy, most
        with lock:
            busy += 1
            most = max(most, busy)

        def finish():
            nonlocal busy
            with lock:
                busy -= 1
            done(None)

        threading.Timer(0.05, finish).start()

    progress = Progress()
    outcomes = drive(send, count=50, rate=1000.0, max_in_flight=2, drain_s=2.0, progress=progress)
    shed = [o for o in outcomes if o.error == SHED]
    assert most <= 2
    assert shed and all(o.sent is None for o in shed)
    assert sum(o.ok for o in outcomes) + len(shed) == 50, "every request has one outcome"
    assert progress.errors == len(shed) and progress.in_flight == 0


def test_server_errors_and_failed_sends_are_counted_by_kind_not_raised():
    def send(i, done):
        if i % 3 == 0:
            raise ConnectionError("socket closed")
        done("StatusCode.UNAVAILABLE: server is not ready" if i % 3 == 1 else None)

    outcomes = drive(send, count=9, rate=1000.0, max_in_flight=10, drain_s=1.0)
    result = summarise(LoadConfig(rate=1000.0, duration_s=1.0), outcomes, [])
    assert result.answered == 3
    assert result.errors == {
        "send failed: socket closed": 3,
        "StatusCode.UNAVAILABLE: server is not ready": 3,
    }


def test_requests_never_answered_end_as_unanswered_after_the_drain_and_late_answers_are_ignored():
    late = []

    def send(i, done):
        late.append(done)

    started = time.perf_counter()
    outcomes = drive(send, count=3, rate=100.0, max_in_flight=10, drain_s=0.2)
    assert time.perf_counter() - started < 1.0, "the test stops by itself"
    assert [o.error for o in outcomes] == [UNANSWERED] * 3
    late[0](None)
    assert outcomes[0].error == UNANSWERED and outcomes[0].done is None


def test_the_time_series_puts_requests_in_the_interval_they_were_due():
    outcomes = [
        Outcome(due=0.1, sent=0.1, done=0.11),  # 10 ms
        Outcome(due=0.5, sent=0.5, done=0.53),  # 30 ms
        Outcome(due=1.2, sent=1.2, done=2.7),  # 1.5 s: answered after the run ended
        Outcome(due=1.4, error=SHED),
    ]
    memory = [(0.0, Memory(100 * 2**20, 300 * 2**20, 2)), (1.5, Memory(110 * 2**20, 0, 0))]
    first, second = time_series(outcomes, duration_s=2.0, bucket_s=1.0, memory=memory)
    assert (first.due, first.errors, first.answered_per_s) == (2, 0, 2.0)
    assert first.p50_ms == pytest.approx(20.0) and first.max_ms == pytest.approx(30.0)
    assert (second.due, second.errors) == (2, 1)
    assert second.answered_per_s == 1.0, "the last interval takes the late answers"
    assert second.p50_ms == pytest.approx(1500.0)
    assert (first.server_mib, first.backends_mib, second.server_mib) == (100, 300, 110)


def test_an_interval_with_no_answers_has_no_latency_rather_than_zero():
    (bucket,) = time_series([Outcome(due=0.0, error=SHED)], 1.0, 1.0, [])
    assert math.isnan(bucket.p50_ms) and math.isnan(bucket.server_mib)


def test_the_summary_reports_achieved_rate_over_the_time_the_answers_took():
    outcomes = [Outcome(due=i / 10, sent=i / 10, done=i / 10 + 0.05) for i in range(10)]
    outcomes[-1].done = 1.9  # the last answer comes late
    result = summarise(LoadConfig(rate=10.0, duration_s=1.0), outcomes, [])
    assert result.seconds == pytest.approx(1.9)
    assert result.achieved_per_s == pytest.approx(10 / 1.9)
    assert result.latency_ms["p50"] == pytest.approx(50.0)


def test_the_request_count_is_bounded_whatever_the_rate_and_duration():
    assert LoadConfig(rate=100.0, duration_s=10.0).count == 1000
    bounded = LoadConfig(rate=100.0, duration_s=10.0, max_requests=250)
    assert (bounded.count, bounded.run_s) == (250, 2.5)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"model": "nope"}, "unknown model 'nope'"),
        ({"rate": 0}, "rate must be positive"),
        ({"max_in_flight": 0}, "at least 1"),
        ({"url": "localhost"}, "give the gRPC host:port"),
    ],
)
def test_bad_settings_are_clear_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        LoadConfig(**settings)


def test_requests_stack_samples_for_batched_models_and_refuse_batches_elsewhere():
    samples = [{"WINDOWS": np.full(3, i, np.int64), "NEXT_KEY": np.array([i])} for i in range(5)]
    requests = Workload("deeplog_keys", samples, (1,)).requests(2)
    assert [r["WINDOWS"].shape for r in requests] == [(2, 3), (2, 3)]
    assert requests[1]["NEXT_KEY"].tolist() == [[2], [3]]
    whole = [{"TEXT": np.array([[b"x"]], object)}]
    assert Workload("log_anomaly", whole, (1,)).requests(1) == whole
    with pytest.raises(ValueError, match="takes no batch"):
        Workload("log_anomaly", whole, (1,)).requests(4)


def test_memory_counts_the_process_and_every_process_below_it():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        me = os.getpid()
        assert child.pid in descendants(me)
        memory = memory_of(me)
        assert memory.server_bytes > 0 and rss_bytes(child.pid) > 0
        assert memory.backends >= 1 and memory.backends_bytes > 0
    finally:
        child.kill()
        child.wait()


def test_the_process_listening_on_a_port_is_found():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert listening_pid(listener.getsockname()[1]) == os.getpid()
