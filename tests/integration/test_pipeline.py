"""Raw log lines through the client and Triton to alerts: the product end to end."""

import json
from dataclasses import replace

import pytest

from client.detection import KeyModel
from client.pipeline import detect_stream
from client.triton_client import InferenceError
from client.workload import WorkloadConfig, generate_workload

TEST_WORKLOAD = WorkloadConfig(blocks=400, anomaly_rate=0.08, seed=12, malformed_lines=8)


@pytest.fixture(scope="module")
def streamed(workload_model):
    workload = generate_workload(TEST_WORKLOAD)
    alerts = []
    summary = detect_stream(workload.lines, workload_model, alerts.append, batch_windows=256)
    return workload, summary, alerts


def test_malformed_lines_are_counted_and_reported_and_the_rest_is_checked(streamed):
    workload, summary, _ = streamed
    assert summary.parse.malformed_total == 8
    reasons = set(summary.parse.malformed)
    assert (
        {"empty", "invalid_utf8", "too_long"}
        <= reasons
        <= {"empty", "binary", "invalid_utf8", "too_long"}
    )
    assert summary.parse.parsed == len(workload.lines) - 8
    assert summary.sessions == TEST_WORKLOAD.blocks


def test_injected_anomalies_are_found_with_few_false_alarms(streamed):
    workload, summary, _ = streamed
    flagged = {s for s, bad in summary.verdicts.items() if bad}
    truth = workload.anomalous_blocks
    assert len(flagged & truth) / len(flagged) >= 0.8  # precision
    caught = {workload.truth[b] for b in flagged}
    assert {"write_exception", "truncated", "replication_timeout"} <= caught
    assert len(flagged & truth) / len(truth) >= 0.7  # recall


def test_alerts_name_the_session_position_actual_and_expected_templates(streamed, workload_model):
    _, summary, alerts = streamed
    assert summary.alerts == len(alerts) > 0
    for alert in alerts:
        data = json.loads(alert.to_json())
        assert summary.verdicts[data["session"]]  # every alert is on a session judged abnormal
        assert data["actual"]["template"]
        assert len(data["expected"]) == workload_model.meta.top_g
        assert all(e["template"] for e in data["expected"])
        assert data["model_version"] == alerts[0].model_version


def test_requests_are_pinned_to_the_version_whose_vocabulary_built_them(workload_model):
    """A vocabulary whose version is not served gets an error, never another version's answer."""
    stale = KeyModel(workload_model.triton, replace(workload_model.meta, version=99))
    workload = generate_workload(WorkloadConfig(blocks=5, seed=3))
    with pytest.raises(InferenceError, match="99"):
        detect_stream(workload.lines, stale, lambda alert: None)
