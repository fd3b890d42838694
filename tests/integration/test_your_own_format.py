"""A log layout the code has never seen, described in a format file: trained, served and detected
through Triton with the CLI and nothing else. The format travels with the version it trained:
``detect`` reads the log with it without being told, and refuses another one.

Runs last among the integration tests (its name): it publishes new versions of the DeepLog
models into the shared repository, and the tests before it pin theirs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime

from client.ops.workload import WorkloadConfig, generate_workload

FORMAT = r"""
name = "edge"
about = "An edge proxy's block store: ISO times with a zone, level in brackets, pid in the text"

[header]
layout = '<When> \[<Level>\] <Component> \(pid <Pid>\): <Content>'

[time]
fields = ["When"]
layouts = ["%Y-%m-%dT%H:%M:%S%z"]

[sessions]
ids = ['blk_-?\d+']
idle_seconds = 7200

[templates]
masks = ['blk_-?\d+', '(\d+\.){3}\d+(:\d+)?']
"""
# What the key model finds alone in the demo's workload (test_pipeline.py); the others need
# the parameter model or ASGNet.
KEY_ANOMALIES = ("write_exception", "truncated", "replication_timeout")
HDFS_LINE = re.compile(rb"^(\d{6}) (\d{6}) (\d+) ([A-Z]+) ([^\s:]+): (.*)$")


def _edge(lines: list[bytes]) -> bytes:
    """The workload's HDFS lines in the new layout (two hours east of UTC)."""
    out = []
    for line in lines:
        date, time, pid, level, component, content = HDFS_LINE.match(line).groups()
        when = datetime.strptime((date + time).decode(), "%y%m%d%H%M%S")
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S+0200").encode()
        out.append(b"%s [%s] %s (pid %s): %s" % (stamp, level, component, pid, content))
    return b"\n".join(out) + b"\n"


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "client", *argv], capture_output=True, text=True, check=False
    )


def test_a_format_file_for_a_new_layout_trains_serves_and_detects_through_the_cli(
    server, repository, tmp_path
):
    fmt = tmp_path / "edge.toml"
    fmt.write_text(FORMAT)
    normal = tmp_path / "normal.log"
    normal.write_bytes(_edge(generate_workload(WorkloadConfig(800, 0.0, seed=11)).lines))
    trained = _cli(
        "train", str(normal), "--format", str(fmt), "--repository", str(repository),
        "--epochs", "8", "--param-epochs", "2",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    version = int(re.search(r"deeplog_keys v(\d+)", trained.stdout).group(1))
    assert "0 malformed" in trained.stdout

    workload = generate_workload(WorkloadConfig(200, 0.2, seed=12, anomaly_types=KEY_ANOMALIES))
    log = tmp_path / "edge.log"
    log.write_bytes(_edge(workload.lines))
    alerts = tmp_path / "alerts.jsonl"
    detect = [
        "detect", str(log), "--url", server.grpc_url, "--version", str(version), "--no-asgnet",
        "--metrics-port", "0", "--quiet", "--store", str(tmp_path / "feedback.sqlite"),
    ]  # fmt: skip
    done = _cli(*detect, "--alerts", str(alerts))  # no --format: the version's own
    assert done.returncode == 0, done.stderr
    flagged = {json.loads(line)["session"] for line in alerts.read_text().splitlines()}
    anomalous = workload.anomalous_blocks
    caught = len(flagged & anomalous) / len(anomalous)
    false = len(flagged - anomalous) / (len(workload.truth) - len(anomalous))
    missed = Counter(workload.truth[b] for b in anomalous - flagged)
    assert caught >= 0.8 and false <= 0.1, (caught, false, missed)

    refused = _cli(*detect, "--format", "hdfs")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: --format hdfs is not the format deeplog_keys v")
    assert refused.stderr.count("\n") == 1
