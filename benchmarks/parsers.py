"""Our parser against Drain3 on loghub's labelled 2,000-line samples: lines per second and
grouping accuracy (Zhu et al., ICSE-SEIP'19: the share of lines whose predicted group holds
exactly the lines of their true group).

Both read the same raw lines and split off the header with the same format regex; Drain3 then
mines the content with its default settings (depth 4, similarity 0.4), ours learns as
``learn_corpus`` does.
"""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

from client.formats import FORMATS
from client.parsing import LogFormat, LogParser

# The loghub systems the client has a header format for (Thunderbird and Hadoop have none).
SYSTEMS = {"HDFS": "hdfs", "BGL": "bgl", "OpenStack": "openstack"}


@dataclass(frozen=True)
class ParserResult:
    system: str
    parser: str
    lines: int
    seconds: float
    groups: int
    grouping_accuracy: float

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.seconds


def grouping_accuracy(predicted: Sequence[Hashable], truth: Sequence[Hashable]) -> float:
    """Share of lines whose predicted group is exactly their true group, as a set of lines."""
    by_predicted: dict[Hashable, set[int]] = defaultdict(set)
    by_truth: dict[Hashable, set[int]] = defaultdict(set)
    for i, (p, t) in enumerate(zip(predicted, truth, strict=True)):
        by_predicted[p].add(i)
        by_truth[t].add(i)
    right = sum(len(lines) for lines in by_truth.values() if _same(lines, predicted, by_predicted))
    return right / len(truth)


def _same(lines: set[int], predicted: Sequence[Hashable], groups: dict) -> bool:
    first = predicted[next(iter(lines))]
    return groups[first] == lines


def ours(log_format: LogFormat, lines: Sequence[bytes]) -> list[Hashable]:
    parser = LogParser(log_format, learn=True)
    groups: list[Hashable] = []
    for line_no, raw in enumerate(lines, start=1):
        parsed = parser.parse(raw, line_no)
        groups.append(("rejected", line_no) if parsed is None else parsed.template_id)
    return groups


def drain3(log_format: LogFormat, lines: Sequence[bytes]) -> list[Hashable]:
    from drain3 import TemplateMiner  # a benchmark dependency (make bench installs it)
    from drain3.template_miner_config import TemplateMinerConfig

    config = TemplateMinerConfig()
    config.profiling_enabled = False
    miner = TemplateMiner(config=config)
    groups: list[Hashable] = []
    for line_no, raw in enumerate(lines, start=1):
        match = log_format.pattern.match(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        if match is None:
            groups.append(("rejected", line_no))
            continue
        groups.append(miner.add_log_message(match.group("content").strip())["cluster_id"])
    return groups


PARSERS: dict[str, Callable[[LogFormat, Sequence[bytes]], list[Hashable]]] = {
    "ours (client/parsing.py)": ours,
    "Drain3 0.9.11": drain3,
}


def compare(loghub: Path, repeats: int = 3) -> list[ParserResult]:
    """Each parser on each system; the time is the best of ``repeats`` runs (a fresh parser
    each run: both learn templates from scratch)."""
    results = []
    for system, format_name in SYSTEMS.items():
        folder = loghub / system
        lines = (folder / f"{system}_2k.log").read_bytes().splitlines()
        with (folder / f"{system}_2k.log_structured.csv").open(newline="") as f:
            truth = [row["EventId"] for row in csv.DictReader(f)]
        for name, parse in PARSERS.items():
            best, groups = float("inf"), []
            for _ in range(repeats):
                start = time.perf_counter()
                groups = parse(FORMATS[format_name], lines)
                best = min(best, time.perf_counter() - start)
            results.append(
                ParserResult(
                    system,
                    name,
                    len(lines),
                    best,
                    len(set(groups)),
                    grouping_accuracy(groups, truth),
                )
            )
    return results
