"""The stage clock counts each second once, in the innermost stage open at that moment."""

import time

from client.stage_clock import StageClock


def test_nested_stages_add_up_to_the_outer_time_and_each_counts_only_its_own():
    clock = StageClock()
    start = time.perf_counter()
    with clock.stage("outer"):
        time.sleep(0.02)
        with clock.stage("inner"):
            time.sleep(0.05)
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    split = clock.split()
    assert set(split) == {"outer", "inner"}
    assert split["inner"] >= 0.05 and split["outer"] >= 0.04
    assert split["outer"] < split["inner"], "the inner sleep is not counted twice"
    assert abs(sum(split.values()) - elapsed) < 0.005


def test_a_stage_entered_again_accumulates():
    clock = StageClock()
    for _ in range(3):
        with clock.stage("parse"):
            time.sleep(0.01)
    assert clock.split()["parse"] >= 0.03
