"""Raw log lines through the client and Triton to alerts: the product end to end."""

import json
from dataclasses import dataclass, replace

import pytest

from client.alerts import Check, SessionVerdict, alert_record
from client.detection import KeyModel
from client.ops.workload import Workload, WorkloadConfig, generate_workload
from client.pipeline import StreamConfig, StreamSummary, detect_stream
from client.sessions import CloseCause
from client.triton_client import InferenceError

TEST_WORKLOAD = WorkloadConfig(blocks=400, anomaly_rate=0.08, seed=12, malformed_lines=8)


@dataclass
class Streamed:
    workload: Workload
    summary: StreamSummary
    alerts: list
    verdicts: dict[str, SessionVerdict]


@pytest.fixture(scope="module")
def streamed(workload_model) -> Streamed:
    workload = generate_workload(TEST_WORKLOAD)
    alerts, verdicts = [], {}
    summary = detect_stream(
        workload.lines,
        workload_model,
        alerts.append,
        on_verdict=lambda v: verdicts.setdefault(v.session, v),
        config=StreamConfig(batch_windows=256),
    )
    return Streamed(workload, summary, alerts, verdicts)


def test_malformed_lines_are_counted_and_reported_and_the_rest_is_checked(streamed):
    workload, summary = streamed.workload, streamed.summary
    assert summary.parse.malformed_total == 8
    reasons = set(summary.parse.malformed)
    assert (
        {"empty", "invalid_utf8", "too_long"}
        <= reasons
        <= {"empty", "binary", "invalid_utf8", "too_long"}
    )
    assert summary.parse.parsed == len(workload.lines) - 8
    assert summary.sessions == len(streamed.verdicts) == TEST_WORKLOAD.blocks  # one verdict each
    # Blocks quiet for the format's idle time close as the log goes on, the rest at its end.
    assert set(summary.closed) <= {CloseCause.IDLE, CloseCause.STREAM_END}
    assert sum(summary.closed.values()) == TEST_WORKLOAD.blocks


def test_injected_anomalies_are_found_with_few_false_alarms(streamed):
    workload = streamed.workload
    flagged = {s for s, v in streamed.verdicts.items() if v.abnormal}
    truth = workload.anomalous_blocks
    assert len(flagged & truth) / len(flagged) >= 0.8  # precision
    caught = {workload.truth[b] for b in flagged}
    assert {"write_exception", "truncated", "replication_timeout"} <= caught
    assert len(flagged & truth) / len(truth) >= 0.7  # recall


def test_alerts_name_the_session_position_actual_and_expected_templates(streamed, workload_model):
    alerts = streamed.alerts
    assert streamed.summary.alerts[Check.LOG_KEY] == len(alerts) > 0
    for alert in alerts:
        data = json.loads(json.dumps(alert_record(alert)))
        verdict = streamed.verdicts[data["session"]]
        assert verdict.abnormal and verdict.key_alerts > 0  # alerts are on abnormal sessions
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
