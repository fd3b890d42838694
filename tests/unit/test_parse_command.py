"""``parse``: logparser's structured CSV of any log with a built-in or user format, good enough to
group every loghub sample at least as Brain does."""

import csv
import json
import subprocess
import sys

import pytest

from benchmarks.parsers import PUBLISHED, SYSTEMS, grouping_accuracy, read_sample
from client.formats import builtin
from client.sources import read_file
from client.structured import parse_to_csv, templates_path


def _parse(log, log_format: str, out) -> subprocess.CompletedProcess:
    argv = ["parse", str(log), "--format", log_format, "--out", str(out)]
    return subprocess.run(
        [sys.executable, "-m", "client", *argv], capture_output=True, text=True, check=False
    )


def _rows(path):
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_every_loghub_sample_is_grouped_at_least_as_well_as_brain_does(
    system, loghub_dir, tmp_path
):
    out = tmp_path / f"{system}.csv"
    result = parse_to_csv(
        read_file(loghub_dir / system / f"{system}_2k.log"), builtin(SYSTEMS[system]), out
    )
    rows = _rows(out)
    truth = read_sample(loghub_dir, system)
    assert [int(r["LineId"]) for r in rows] == list(range(1, len(truth.lines) + 1))
    assert result.stats.malformed_total == 0
    brain = PUBLISHED[system][1]
    assert grouping_accuracy([r["EventId"] for r in rows], truth.events) >= brain


def test_the_cli_writes_every_line_in_order_and_a_malformed_one_with_its_reason(tmp_path):
    log = tmp_path / "shop.log"
    log.write_bytes(
        b"2026-12-02 10:00:00 [INFO] paid order=a1 in 3 s\n"
        b"garbage without a header\n"
        b"2026-12-02 10:00:01 [INFO] paid order=b2 in 12 s\n"
        b"2026-12-02 10:00:02 [WARN] bad \xff byte\n"
    )
    fmt = tmp_path / "shop.toml"
    fmt.write_text(
        'name = "shop"\n[header]\n'
        "layout = '<Date> <Time> \\[<Level>\\] <Content>'\n"
        '[time]\nfields = ["Date", "Time"]\nlayouts = ["%Y-%m-%d %H:%M:%S"]\n'
        "[sessions]\nids = ['order=(\\w+)']\n"
    )
    out = tmp_path / "shop.csv"
    done = _parse(log, str(fmt), out)
    assert done.returncode == 0, done.stderr
    assert "4 lines: 2 parsed" in done.stderr and "no_header 1" in done.stderr
    rows = _rows(out)
    assert [r["LineId"] for r in rows] == ["1", "2", "3", "4"]
    assert list(rows[0])[:4] == ["LineId", "Date", "Time", "Level"]
    assert rows[0]["EventId"] == rows[2]["EventId"] == "E1"
    assert rows[0]["EventTemplate"] == "paid order=<*> in <*> s"
    assert json.loads(rows[2]["ParameterList"]) == ["b2", "12"]
    assert (rows[1]["EventId"], rows[1]["Malformed"]) == ("", "no_header")
    assert rows[1]["Content"] == "garbage without a header"
    assert (rows[3]["EventId"], rows[3]["Malformed"]) == ("", "invalid_utf8")
    (template,) = _rows(templates_path(out))
    assert (template["EventId"], template["Occurrences"]) == ("E1", "2")


def test_an_unknown_format_is_a_one_line_error(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("a\n")
    done = _parse(log, "nginx", tmp_path / "x.csv")
    assert done.returncode != 0
    assert done.stderr.startswith("error: unknown format 'nginx'") and done.stderr.count("\n") == 1
