"""Always-on detection against a real server: a followed log, sessions that close while the
stream goes on, checkpoints that survive SIGKILL, a server restarted mid-stream, and a client
that needs nothing but the server's address."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from client.formats import SessionRule, builtin
from client.ops.workload import WorkloadConfig, generate_workload
from client.pipeline import StreamConfig, detect_stream
from client.sessions import CloseCause
from export.contract.specs import DEEPLOG_KEYS, MODEL_META
from export.contract.vocab import END
from server_config.launcher import TritonServer, free_ports

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = WorkloadConfig(blocks=400, anomaly_rate=0.08, seed=31, malformed_lines=6)


@pytest.fixture(scope="module")
def workload():
    return generate_workload(WORKLOAD)


@pytest.fixture(scope="module")
def big_log(tmp_path_factory):
    """A log long enough (about 25,000 lines) that a run can be interrupted in the middle."""
    lines = generate_workload(WorkloadConfig(blocks=1400, anomaly_rate=0.05, seed=32)).lines
    path = tmp_path_factory.mktemp("logs") / "big.log"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _detect(url: str, *args: str, cwd: Path = PROJECT_ROOT, env=None) -> subprocess.Popen:
    """``python -m client detect`` as its own process, as an ops team runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "client", "detect", *args, "--url", url],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _finish(process: subprocess.Popen, timeout: float = 180) -> str:
    _, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err.decode()
    return err.decode()


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _alive_group(group: int) -> bool:
    """Whether any process of the group is still there (dead ones are reaped by init)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- sessions close while the stream goes on (in-process engine, the session's server) --------


def test_sessions_close_at_their_end_rule_when_idle_and_early_when_too_many_are_open(
    workload_model, workload
):
    """The same log, three ways: each session is checked exactly once, whatever closed it."""
    baseline, end_rule, crowded = [], [], []
    detect_stream(workload.lines, workload_model, lambda a: None, on_verdict=baseline.append)
    deleting = replace(builtin("hdfs"), end_rule=re.compile(r"^Deleting block"))
    summary = detect_stream(
        workload.lines,
        workload_model,
        lambda a: None,
        log_format=deleting,
        on_verdict=end_rule.append,
        config=StreamConfig(session_idle_s=300),
    )
    assert summary.closed[CloseCause.END_RULE] > 0 and summary.closed[CloseCause.IDLE] > 0
    assert {v.closed_by for v in end_rule} >= {CloseCause.END_RULE, CloseCause.IDLE}
    assert sum(summary.closed.values()) == len(end_rule) == summary.sessions
    bounded = detect_stream(
        workload.lines,
        workload_model,
        lambda a: None,
        on_verdict=crowded.append,
        config=StreamConfig(max_open_sessions=20),
    )
    assert bounded.closed[CloseCause.EVICTED] > 0  # the least recently active, counted
    assert len(crowded) == bounded.sessions == sum(bounded.closed.values())
    assert len(baseline) == WORKLOAD.blocks  # with the format's idle time: one per block


def test_a_fixed_window_of_lines_closes_when_the_next_begins_not_when_it_goes_idle(
    workload_model, workload
):
    windows = replace(builtin("hdfs"), sessions=SessionRule(window_lines=500))
    verdicts = []
    summary = detect_stream(
        workload.lines,
        workload_model,
        lambda a: None,
        log_format=windows,
        on_verdict=verdicts.append,
        config=StreamConfig(session_idle_s=10**9),  # never idle: only the next window closes one
    )
    count = -(-len(workload.lines) // 500)
    assert [v.session for v in verdicts] == [f"lines:{i}" for i in range(count)]
    assert summary.closed == {CloseCause.WINDOW_END: count - 1, CloseCause.STREAM_END: 1}
    assert all(v.last_line <= 500 * (i + 1) for i, v in enumerate(verdicts))


def test_a_long_session_is_checked_in_parts_that_continue_its_windows(workload_model, workload):
    whole, parts = [], []
    detect_stream(workload.lines, workload_model, whole.append)
    verdicts = []
    summary = detect_stream(
        workload.lines,
        workload_model,
        parts.append,
        on_verdict=verdicts.append,
        config=StreamConfig(max_session_keys=5),
    )
    assert summary.closed[CloseCause.MAX_LENGTH] > 0
    assert max(v.part for v in verdicts) >= 2

    # Every key is judged on the same h keys before it as in one piece; only the ends of the
    # parts before the last are not checked (the session did not end there).
    def key_alerts(alerts):
        return {(a.session, a.position, a.rank) for a in alerts if a.actual.key != END}

    assert key_alerts(parts) == key_alerts(whole)


# -- the CLI following a growing, rotating file --------------------------------------------


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as page:
        text = page.read().decode()
    return float(re.search(rf"^{re.escape(name)} (\S+)$", text, re.M).group(1))


def test_a_followed_log_is_checked_while_it_is_written_and_across_a_rotation(
    workload_model, server, workload, tmp_path
):
    log, alerts, verdicts = tmp_path / "app.log", tmp_path / "alerts.jsonl", tmp_path / "v.jsonl"
    (metrics_port,) = free_ports(1)
    lines = workload.lines
    half = len(lines) // 2
    log.write_bytes(b"")
    run = _detect(
        server.grpc_url,
        str(log),
        "--follow",
        *_pinned(workload_model, "--no-store"),
        "--alerts",
        str(alerts),
        "--verdicts",
        str(verdicts),
        "--session-idle",
        "5",  # short, so the blocks close soon after the file stops growing
        "--metrics-port",
        str(metrics_port),
    )
    written = threading.Event()

    def write(start: int, end: int) -> None:  # about 1,000 lines/s
        with open(log, "ab") as out:
            for i in range(start, end, 20):
                out.write(b"\n".join(lines[i : min(i + 20, end)]) + b"\n")
                out.flush()
                time.sleep(0.02)

    def write_and_rotate() -> None:  # logrotate half way: renamed, a new file begun
        write(0, half)
        os.rename(log, tmp_path / "app.log.1")
        write(half, len(lines))
        written.set()

    writer = threading.Thread(target=write_and_rotate)
    writer.start()
    try:
        _wait_for(lambda: _records(alerts), what="a first alert")
        assert not written.is_set(), "alerts appear while the log is still being written"
        assert 0 < _metric(metrics_port, "logad_lines_read_total") < len(lines)
        assert _metric(metrics_port, "logad_sessions_open") > 0
        assert _metric(metrics_port, 'logad_alerts_total{check="log_key"}') > 0
        writer.join()
        _wait_for(lambda: _metric(metrics_port, "logad_lines_read_total") == len(lines), 60)
        # A quiet file's clock runs with the wall clock: every block closes by itself.
        _wait_for(lambda: _metric(metrics_port, "logad_sessions_open") == 0, 60, "idle closing")
        assert _metric(metrics_port, "logad_follow_lag_bytes") == 0
    finally:
        writer.join()
        run.send_signal(signal.SIGTERM)
    err = _finish(run)
    assert f"{len(lines)} lines:" in err and "stopped" in err  # nothing lost in the rotation
    checked = _records(verdicts)
    assert {v["session"] for v in checked} == set(workload.truth)
    assert {v["closed_by"] for v in checked} == {"idle"}
    flagged = {v["session"] for v in checked if v["abnormal"]}
    assert {a["session"] for a in _records(alerts) if a["check"] == "log_key"} <= flagged


# -- resume after SIGKILL ------------------------------------------------------------------


def _pinned(model, *args: str) -> list[str]:
    return ["--no-asgnet", "--version", str(model.meta.version), "--quiet", *args]


def test_a_run_killed_with_sigkill_resumes_and_emits_every_alert_exactly_once(
    workload_model, param_models, server, big_log, tmp_path
):
    # Blocks close by idle time as the log goes on, so verdicts come out during the run too.
    common = _pinned(
        workload_model,
        "--params",
        "onnx",
        "--no-store",
        "--metrics-port",
        "0",
        "--session-idle",
        "300",
    )
    ref_alerts, ref_verdicts = tmp_path / "ref.jsonl", tmp_path / "ref_verdicts.jsonl"
    _finish(
        _detect(
            server.grpc_url,
            str(big_log),
            *common,
            "--alerts",
            str(ref_alerts),
            "--verdicts",
            str(ref_verdicts),
        )
    )
    alerts, verdicts, checkpoint = (
        tmp_path / "alerts.jsonl",
        tmp_path / "verdicts.jsonl",
        tmp_path / "run.checkpoint",
    )
    resumable = [
        *common,
        "--alerts",
        str(alerts),
        "--verdicts",
        str(verdicts),
        "--checkpoint",
        str(checkpoint),
        "--checkpoint-every",
        "0.3",
    ]
    run = _detect(server.grpc_url, str(big_log), *resumable)
    _wait_for(lambda: checkpoint.exists() and len(_records(verdicts)) > 100, what="progress")
    run.kill()  # SIGKILL: no chance to write anything more
    run.wait()
    before = len(_records(alerts))
    assert 0 < before < len(_records(ref_alerts)), "killed in the middle"
    err = _finish(_detect(server.grpc_url, str(big_log), *resumable))
    assert "resuming at line" in err
    got, expected = _records(alerts), _records(ref_alerts)
    assert len(got) == len({a["id"] for a in got}), "no alert twice"
    assert sorted(a["id"] for a in got) == sorted(a["id"] for a in expected)
    got_v, expected_v = _records(verdicts), _records(ref_verdicts)
    assert len(got_v) == len({v["id"] for v in got_v}), "no verdict twice"
    assert sorted(json.dumps(v, sort_keys=True) for v in got_v) == sorted(
        json.dumps(v, sort_keys=True) for v in expected_v
    )


# -- a server killed and restarted mid-stream ----------------------------------------------


def test_a_server_killed_and_restarted_mid_stream_loses_no_verdict_and_no_alert(
    workload_model, repository, big_log, tmp_path
):
    """A second server over the same repository, killed (SIGKILL, with its backend stubs) and
    started again on the same ports while a client streams to it."""
    replica = TritonServer(repository, load_models=(DEEPLOG_KEYS.name, MODEL_META.name)).start()
    try:
        args = _pinned(
            workload_model,
            "--no-store",
            "--metrics-port",
            "0",
            "--retry-for",
            "90",
            "--session-idle",
            "300",
        )
        reference = tmp_path / "reference.jsonl"
        ref_verdicts = tmp_path / "reference_verdicts.jsonl"
        _finish(
            _detect(
                replica.grpc_url,
                str(big_log),
                *args,
                "--alerts",
                str(reference),
                "--verdicts",
                str(ref_verdicts),
            )
        )
        alerts, verdicts = tmp_path / "alerts.jsonl", tmp_path / "verdicts.jsonl"
        run = _detect(
            replica.grpc_url,
            str(big_log),
            *args,
            "--alerts",
            str(alerts),
            "--verdicts",
            str(verdicts),
        )
        _wait_for(lambda: len(_records(verdicts)) > 50, what="the first verdicts")
        group = os.getpgid(replica.pid)
        replica.kill()
        _wait_for(lambda: not _alive_group(group), 30, "the backend stubs to end with it")
        during = len(_records(verdicts))
        time.sleep(1.0)
        replica.start()  # same ports: the client's retries reach it
        err = _finish(run)
        assert during < len(_records(ref_verdicts)), "the outage came mid-stream"
        assert "input ended" in err
    finally:
        replica.stop()
    for got, want in ((alerts, reference), (verdicts, ref_verdicts)):
        got_ids = [r["id"] for r in _records(got)]
        assert len(got_ids) == len(set(got_ids))
        assert sorted(got_ids) == sorted(r["id"] for r in _records(want))


# -- a client that needs only the address ---------------------------------------------------

NO_REPOSITORY_NO_TORCH = """
import builtins, os, sys
repository = sys.argv[1]
blocked = ("torch", "transformers", "onnx", "onnxruntime", "faiss", "tokenizers")
real_import = builtins.__import__
def guarded_import(name, *args, **kwargs):
    if name.split(".")[0] in blocked:
        raise ImportError(f"the runtime imported {name}")
    return real_import(name, *args, **kwargs)
builtins.__import__ = guarded_import
def no_repository(event, args):
    if event != "open":
        return
    path = os.fspath(args[0]) if isinstance(args[0], os.PathLike) else args[0]
    if isinstance(path, bytes):
        path = path.decode(errors="replace")
    if isinstance(path, str) and os.path.abspath(path).startswith(repository):
        raise PermissionError(f"the runtime opened {path} in the model repository")
sys.addaudithook(no_repository)
from client.cli import main
code = main(sys.argv[2:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
assert not loaded, loaded
sys.exit(code)
"""


def test_detection_needs_only_the_server_address_not_the_repository_nor_torch(
    server, repository, hdfs_model, asgnet_release, param_models, loghub_dir, tmp_path
):
    """Through log_anomaly (the default path), with the parameter-value check, in a fresh
    interpreter that cannot import torch and cannot open a file of the repository."""
    alerts, verdicts = tmp_path / "alerts.jsonl", tmp_path / "verdicts.jsonl"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_REPOSITORY_NO_TORCH,
            str(repository.resolve()),
            "detect",
            str(loghub_dir / "HDFS" / "HDFS_2k.log"),
            "--url",
            server.grpc_url,
            "--no-load",
            "--alerts",
            str(alerts),
            "--verdicts",
            str(verdicts),
            "--store",
            str(tmp_path / "feedback.sqlite"),
            "--metrics-port",
            "0",
        ],
        cwd=tmp_path,  # no model_repository here either
        env=env,
        capture_output=True,
        timeout=300,
    )
    err = run.stderr.decode()
    assert run.returncode == 0, err
    assert "through log_anomaly with ASGNet" in err
    checked = _records(verdicts)
    assert checked and all(v["diagnosis"] is not None for v in checked)
    assert {a["check"] for a in _records(alerts)} <= {"log_key", "diagnosis"}
    diagnoses = [a for a in _records(alerts) if a["check"] == "diagnosis"]
    for alert in diagnoses:  # the nearest past units come from the server's search
        assert alert["similar"] and alert["similar"][0]["unit"]
