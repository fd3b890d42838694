"""The benchmark's measuring parts, without a server: grouping accuracy as loghub defines it,
perf_analyzer's CSV and input files, the replicated log."""

import json
from itertools import pairwise

import numpy as np

from benchmarks.end_to_end import replicate
from benchmarks.parsers import grouping_accuracy
from benchmarks.perf_analyzer import read_csv, write_input_data
from client.formats import builtin
from client.parsing import LogParser

HDFS = builtin("hdfs")


def test_a_line_counts_only_when_its_predicted_group_is_exactly_its_true_group():
    truth = ["A", "A", "B", "B", "C"]
    assert grouping_accuracy([1, 1, 2, 2, 3], truth) == 1.0
    assert grouping_accuracy([1, 1, 1, 1, 3], truth) == 0.2, "A and B merged: only C is right"
    assert grouping_accuracy([1, 2, 3, 3, 4], truth) == 0.6, "A split: B and C are right"


def test_perf_analyzer_csv_is_read_in_milliseconds(tmp_path):
    header = (
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
        "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,"
        "p50 latency,p90 latency,p95 latency,p99 latency,Avg latency,request/response,"
        "response wait"
    )
    row = "2,1500.5,10,200,300,20,1000,100,5,1500,1800,1900,2500,1600,0,0"
    path = tmp_path / "run.csv"
    path.write_text(f"{header}\n{row}\n")
    (point,) = read_csv(path, "deeplog_keys", 64)
    assert (point.model, point.batch, point.concurrency) == ("deeplog_keys", 64, 2)
    assert point.inferences_per_s == 1500.5
    assert (point.p50_ms, point.p99_ms, point.queue_ms, point.compute_infer_ms) == (
        1.5,
        2.5,
        0.3,
        1.0,
    )


def test_input_data_carries_each_requests_shape_and_text_as_strings(tmp_path):
    samples = [
        {
            "WINDOWS": np.arange(6, dtype=np.int64).reshape(3, 2),
            "TEXT": np.array([[b"a b"]], object),
        },
        {"WINDOWS": np.arange(2, dtype=np.int64).reshape(1, 2), "TEXT": np.array([[b"c"]], object)},
    ]
    data = json.loads(write_input_data(tmp_path / "in.json", samples).read_text())["data"]
    assert data[0]["WINDOWS"] == {"content": [0, 1, 2, 3, 4, 5], "shape": [3, 2]}
    assert data[1]["TEXT"] == {"content": ["c"], "shape": [1, 1]}


def test_each_copy_of_a_replicated_log_has_its_own_sessions():
    line = b"081109 203518 143 INFO dfs.DataNode: Receiving block blk_-16089 src: /10.0.0.1:5"
    copies = replicate([line], 3)
    parser = LogParser(HDFS, learn=True)
    sessions = [HDFS.sessions(parser.parse(c, i)) for i, c in enumerate(copies, 1)]
    assert len({s[0] for s in sessions}) == 3
    assert all(
        c.replace(s[0].encode(), b"") == copies[0].replace(sessions[0][0].encode(), b"")
        for c, s in zip(copies, sessions, strict=True)
    )


def test_the_workflow_evaluation_s_interleaving_keeps_each_session_s_order():
    from benchmarks.evaluations.workflow import interleave

    sessions = [[3, 4, 5, 6]] * 30 + [[10, 11]] * 30
    keys, owners = interleave(sessions, concurrency=5, seed=1)
    assert sorted(keys) == sorted(k for s in sessions for k in s)
    for i, session in enumerate(sessions):
        assert [k for k, o in zip(keys, owners, strict=True) if o == i] == session
    # Five sessions open at a time: most keys do not follow one of their own session.
    assert sum(a != b for a, b in pairwise(owners)) > len(keys) / 2


def test_separated_tasks_are_scored_by_pairs_and_the_adjusted_rand_index():
    from benchmarks.evaluations.workflow import adjusted_rand_index, score_separation

    assert adjusted_rand_index([0, 0, 1, 1], [5, 5, 7, 7]) == 1.0
    assert adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) < 0
    truth = [(3, 4, 5), (6, 7)]
    assert score_separation(truth, truth, [3, 4, 5, 6, 7]) == (1.0, 1.0, 1.0)
    precision, recall, _ = score_separation([(3, 4), (5,), (6, 7, 9)], truth, [3, 4, 5, 6, 7, 9])
    # together and truly: (3,4), (6,7); found together but apart in truth: (6,9), (7,9) (9 is
    # in no true task); truly together but split: (3,5), (4,5)
    assert (precision, recall) == (0.5, 0.5)
