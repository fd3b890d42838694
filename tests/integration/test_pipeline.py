"""Raw log lines through the client and Triton to alerts: the product end to end."""

import json
from dataclasses import dataclass, replace

import pytest

from client.alerts import (
    Check,
    ParamAlert,
    SessionVerdict,
    alert_from_json,
    alert_id,
    alert_record,
    key_ref,
)
from client.cli import main
from client.detection import KeyModel
from client.feedback import FeedbackStore
from client.ops.workload import Workload, WorkloadConfig, generate_workload
from client.pipeline import StreamConfig, StreamSummary, detect_stream
from client.sessions import CloseCause
from client.triton_client import InferenceError
from export.contract.vocab import FIRST_KEY

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


def test_every_log_key_alert_says_where_its_session_left_the_task_s_workflow(streamed):
    workload, alerts = streamed.workload, streamed.alerts
    for alert in alerts:
        place = alert.workflow
        assert place is not None and place.happened == alert.actual
        assert alert_from_json(json.loads(json.dumps(alert_record(alert)))) == alert
    # A session's first alert names the step its injected fault put in (or the end that came
    # in place of the writes): the divergence point is the fault's position.
    first = {}
    for alert in alerts:
        first.setdefault(alert.session, alert)
    order_faults = ("write_exception", "truncated", "redundant_store", "delete_before_store")
    named = [
        first[b].position == workload.fault_at[b]
        for b in first
        if workload.truth[b] in order_faults
    ]
    print(f"divergence at the fault in {sum(named)} of {len(named)} sessions")
    assert len(named) >= 10 and sum(named) >= 0.8 * len(named)


def test_the_workflow_command_draws_where_an_alert_s_session_left_the_workflow(
    streamed, workload_model, server, tmp_path, capsys
):
    alert = next(a for a in streamed.alerts if not a.workflow.known_transition)
    keys = {alert.session: _session_keys(streamed.workload, workload_model, alert.session)}
    store = tmp_path / "feedback.sqlite"
    with FeedbackStore(store) as feedback:
        feedback.record([alert], keys, workload_model.meta.vocabulary.fingerprint)
    out = tmp_path / "pictures" / "alert"
    out.parent.mkdir()
    argv = ["workflow", "--url", server.grpc_url, "--store", str(store), "--out", str(out)]
    assert main([*argv, "--alert", alert_id(alert)]) == 0
    said = capsys.readouterr().out
    assert alert.session in said and alert.workflow.last_normal.name in said
    svg = (tmp_path / "pictures" / "alert.svg").read_text()
    assert "came instead" in svg and alert.actual.name in svg
    assert (tmp_path / "pictures" / "alert.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # With a parameter-value alert of the same session beside it: its step is marked too.
    flagged = next(k for k in keys[alert.session] if k >= FIRST_KEY)
    slow = ParamAlert(
        alert.session,
        5,
        key_ref(workload_model.meta.vocabulary, flagged),
        "gap_s",
        155.0,
        7.5,
        1.0,
        23.6,
        "deeplog_params",
        1,
    )
    with FeedbackStore(store) as feedback:
        feedback.record([slow], keys, workload_model.meta.vocabulary.fingerprint)
    both = tmp_path / "pictures" / "both"
    assert (
        main(
            [*argv[:-2], "--out", str(both), "--alert", alert_id(alert), "--alert", alert_id(slow)]
        )
        == 0
    )
    assert "gap_s=155 outside [1, 23.6]" in both.with_suffix(".svg").read_text()
    assert (
        main(
            [*argv[:-2], "--out", str(both), "--alert", alert_id(alert), "--alert", alert_id(alert)]
        )
        == 1
    )
    assert "one log-key alert at most" in capsys.readouterr().err
    # Without an alert: the task alone; a task it does not have is a one-line error.
    assert main([*argv[:-2], "--out", str(tmp_path / "pictures" / "task")]) == 0
    assert "came instead" not in (tmp_path / "pictures" / "task.svg").read_text()
    assert main([*argv, "--task", "99"]) == 1
    assert "no task 99" in capsys.readouterr().err


def _session_keys(workload, model, session: str) -> list[int]:
    from client.ops.training import session_keys

    return session_keys(workload.lines, model.meta.vocabulary)[session]
