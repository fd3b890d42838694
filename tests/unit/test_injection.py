"""The evaluation's performance-anomaly injections change exactly what they say."""

import numpy as np

from benchmarks.evaluations.params import _openstack_time, delayed_steps, slow_requests

API = (
    b"nova-api.log.1 2017-05-16 00:00:01.000 1 INFO nova.osapi_compute.wsgi.server [-] "
    b'10.0.0.1 "GET /v2/x HTTP/1.1" status: 200 len: 10 time: 0.2000000'
)
STEP = (
    b"nova-compute.log.1 2017-05-16 00:00:{s:02d}.000 2 INFO nova.compute.manager [-] "
    b"[instance: 11111111-2222-3333-4444-555555555555] step {n}"
)


def test_a_slowed_request_has_its_time_multiplied_and_nothing_else():
    lines = [API] * 20
    changed, injected = slow_requests(lines, 5.0, np.random.default_rng(0))
    assert len(injected) == 2  # 10% of the eligible lines, 1-based line numbers
    for line_no in injected:
        assert changed[line_no - 1] == API.replace(b"time: 0.2000000", b"time: 1.0000000")
    assert sum(a != b for a, b in zip(lines, changed, strict=True)) == 2


def test_a_delayed_step_multiplies_its_gap_and_moves_the_rest_of_its_instance():
    lines = [
        STEP.replace(b"{s:02d}", b"%02d" % (2 * n)).replace(b"{n}", b"%d" % n) for n in range(11)
    ]
    changed, injected = delayed_steps(lines, 3.0, np.random.default_rng(1))
    (line_no,) = injected
    before = [_openstack_time(line) for line in lines]
    after = [_openstack_time(line) for line in changed]
    i = line_no - 1
    assert after[i] - after[i - 1] == 3 * (before[i] - before[i - 1])
    assert list(np.diff(after[i:])) == [2.0] * (len(lines) - i - 1)
