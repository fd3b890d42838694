"""The streaming parser: templates and keys from raw lines; bad lines counted, never raised."""

import csv

import pytest

from client.formats import HDFS_FORMAT, hdfs_session_ids
from client.parsing import WILDCARD, LogParser, tokenize

RECEIVING = (
    b"081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block blk_-1608999687919862906 "
    b"src: /10.250.19.102:54106 dest: /10.250.19.102:50010"
)
SERVED = (
    b"081109 204005 35 INFO dfs.DataNode$DataXceiver: 10.251.73.220:50010 "
    b"Served block blk_7128370237687728475 to /10.251.203.4"
)


def test_tokens_holding_a_digit_are_variables():
    assert tokenize("Receiving block blk_12 src: /10.0.0.1:5") == [
        "Receiving",
        "block",
        WILDCARD,
        "src:",
        WILDCARD,
    ]


def test_a_line_gives_its_template_parameters_and_header():
    parser = LogParser(HDFS_FORMAT, learn=True)
    parsed = parser.parse(RECEIVING, 1)
    assert parsed.template == "Receiving block <*> src: <*> dest: <*>"
    assert parsed.params == (
        "blk_-1608999687919862906",
        "/10.250.19.102:54106",
        "/10.250.19.102:50010",
    )
    assert parsed.header["level"] == "INFO"
    assert parsed.header["component"] == "dfs.DataNode$DataXceiver"
    assert hdfs_session_ids(parsed) == ["blk_-1608999687919862906"]


def test_the_same_template_gets_the_same_key():
    parser = LogParser(HDFS_FORMAT, learn=True)
    first = parser.parse(RECEIVING, 1)
    second = parser.parse(RECEIVING.replace(b"blk_-1608999687919862906", b"blk_42"), 2)
    assert first.template_id == second.template_id
    assert len(parser.templates) == 1


def test_a_frozen_parser_maps_unseen_templates_to_unknown():
    learnt = LogParser(HDFS_FORMAT, learn=True)
    learnt.parse(RECEIVING, 1)
    frozen = LogParser(HDFS_FORMAT, templates=learnt.templates, learn=False)
    assert frozen.parse(RECEIVING, 1).template_id == 0
    unseen = frozen.parse(SERVED, 2)
    assert unseen.template_id == -1
    assert frozen.stats.unknown == 1
    assert frozen.templates == learnt.templates  # frozen never learns


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"   \t ", "empty"),
        (bytes(range(256)), "invalid_utf8"),
        (b"081109 203518 143 INFO dfs.X: bad \xff\xfe bytes", "invalid_utf8"),
        (b"081109 203518 143 INFO dfs.X: ctrl \x00\x01\x02", "binary"),
        (b"x" * (1024 * 1024), "too_long"),
        (b"this line has no HDFS header", "no_header"),
    ],
)
def test_malformed_lines_are_counted_by_reason_never_raised(raw, reason):
    parser = LogParser(HDFS_FORMAT, learn=True)
    assert parser.parse(raw, 7) is None
    assert parser.stats.malformed == {reason: 1}
    assert parser.stats.examples == [(7, reason)]
    assert reason in parser.stats.summary()
    # The parser keeps working after a bad line.
    assert parser.parse(RECEIVING, 8) is not None
    assert parser.stats.lines == 2 and parser.stats.parsed == 1


def test_grouping_accuracy_on_loghub_hdfs_matches_published_drain(loghub_dir):
    """GA: fraction of lines whose predicted group equals their true group exactly."""
    with open(loghub_dir / "HDFS" / "HDFS_2k.log_structured.csv", newline="") as f:
        truth = [row["EventId"] for row in csv.DictReader(f)]
    raw = (loghub_dir / "HDFS" / "HDFS_2k.log").read_bytes().splitlines()
    parser = LogParser(HDFS_FORMAT, learn=True)
    predicted = [parser.parse(line, i).template_id for i, line in enumerate(raw)]
    assert parser.stats.malformed_total == 0
    groups_pred: dict[int, set[int]] = {}
    groups_true: dict[str, set[int]] = {}
    for i, (p, t) in enumerate(zip(predicted, truth, strict=True)):
        groups_pred.setdefault(p, set()).add(i)
        groups_true.setdefault(t, set()).add(i)
    correct = sum(
        1
        for i, (p, t) in enumerate(zip(predicted, truth, strict=True))
        if groups_pred[p] == groups_true[t]
    )
    assert correct / len(truth) >= 0.9975  # Drain's published GA on this sample
