"""Raw log lines to verdicts, the client's own path (``detect_stream``), with the time split by
stage: parse, sessions (grouping, windows), Triton, decisions (judging, alerts), parameters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from client.detection import KeyModel
from client.log_anomaly import LogAnomalyModel
from client.param_detection import ParamModel
from client.pipeline import detect_stream
from client.step_detection import StepModel

BLOCK = re.compile(rb"blk_(-?)(\d+)")


@dataclass(frozen=True)
class EndToEnd:
    data: str
    path: str
    lines: int
    sessions: int
    seconds: float
    stages: dict[str, float]

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.seconds


def replicate(lines: Sequence[bytes], copies: int) -> list[bytes]:
    """``lines`` ``copies`` times over, each copy's block ids made its own (a digit prefix), so
    a copy's sessions are new sessions, as more of the same log would be."""
    out = []
    for copy in range(copies):
        renamed = rb"blk_\g<1>%03d\g<2>" % copy
        out += [BLOCK.sub(renamed, line) for line in lines]
    return out


def run(
    data: str,
    lines: Sequence[bytes],
    model: KeyModel,
    params: ParamModel | None = None,
    diagnose: LogAnomalyModel | None = None,
    steps: StepModel | None = None,
) -> EndToEnd:
    path = (
        "log_anomaly (DeepLog + ASGNet per session)"
        if diagnose
        else "deeplog_steps streaming (state carried)"
        if steps
        else "deeplog_keys streaming"
    )
    if params is not None:
        path += " + parameter values"
    summary = detect_stream(
        lines, model, lambda alert: None, params=params, diagnose=diagnose, steps=steps
    )
    return EndToEnd(data, path, len(lines), summary.sessions, summary.seconds, summary.stages)
