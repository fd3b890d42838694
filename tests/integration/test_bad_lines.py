"""A hundred thousand malformed lines through ``detect``, among a real workload: no crash, no
NaN in any verdict or alert, every malformed line counted under its reason."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np

from client.cli import main
from client.ops.workload import WorkloadConfig, generate_workload

MALFORMED = 100_000


def _malformed_line(reason: str, valid: bytes, rng: np.random.Generator) -> bytes:
    if reason == "no_header":
        words = rng.choice(["GET", "/index", "200", "error", "x=1", "ok"], rng.integers(1, 8))
        return " ".join(words).encode()
    if reason == "invalid_utf8":
        return valid[:20] + bytes([0xFF, 0xC3, 0x28]) + valid[20:]
    if reason == "binary":
        return valid[:30] + b"\x00\x01" + valid[30:]
    if reason == "empty":
        return b" \t " * int(rng.integers(1, 4))
    if reason == "too_long":
        return valid + b" " + b"x" * (70 * 1024)
    if reason == "bad_time":  # a header that matches, a date that does not exist
        return b"089999 256199" + valid[13:]
    raise AssertionError(reason)


def test_a_hundred_thousand_malformed_lines_are_counted_by_reason_and_nothing_breaks(
    workload_model, param_models, server, tmp_path, capsys
):
    rng = np.random.default_rng(23)
    valid = generate_workload(WorkloadConfig(200, 0.05, seed=5)).lines
    weights = {
        "no_header": 0.35,
        "invalid_utf8": 0.2,
        "binary": 0.15,
        "empty": 0.1,
        "bad_time": 0.2,
    }
    reasons = [str(r) for r in rng.choice(list(weights), MALFORMED - 20, p=list(weights.values()))]
    reasons += ["too_long"] * 20  # 70 KiB each: read in pieces, never held whole
    rng.shuffle(reasons)
    lines = [bytes(line) for line in valid]
    for reason in reasons:
        at = int(rng.integers(0, len(lines) + 1))
        lines.insert(at, _malformed_line(reason, valid[int(rng.integers(0, len(valid)))], rng))
    log = tmp_path / "mixed.log"
    log.write_bytes(b"\n".join(lines) + b"\n")
    alerts, verdicts = tmp_path / "alerts.jsonl", tmp_path / "verdicts.jsonl"
    argv = ["detect", str(log), "--url", server.grpc_url, "--metrics-port", "0", "--no-asgnet"]
    argv += ["--version", str(workload_model.meta.version), "--params", "onnx"]
    argv += ["--alerts", str(alerts), "--verdicts", str(verdicts)]
    argv += ["--store", str(tmp_path / "feedback.sqlite")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    summary = next(line for line in err.splitlines() if " malformed (" in line)
    counted = dict(
        (name, int(n))
        for name, n in re.findall(r"(\w+) (\d+)", summary.split(" malformed (")[1].split(")")[0])
    )
    assert counted == dict(Counter(reasons)), summary
    assert f"{len(lines)} lines: " in summary
    for path in (alerts, verdicts):
        text = path.read_text()
        assert "NaN" not in text and "Infinity" not in text
        records = [json.loads(line) for line in text.splitlines()]
        assert records
    assert len(records) >= 200  # every block of the workload got its verdict
