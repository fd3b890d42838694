"""The streaming parser: templates and keys from raw lines; bad lines counted, never raised."""

import csv
import random
from dataclasses import replace

import pytest

from benchmarks.parsers import SYSTEMS
from client.formats import builtin, parse_format
from client.parsing import TEMPLATE_LIMIT, WILDCARD, LogParser, TemplateRules, tokenize

HDFS = builtin("hdfs")

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
    parser = LogParser(HDFS, learn=True)
    parsed = parser.parse(RECEIVING, 1)
    assert parsed.template == "Receiving block blk_<*> src: /<*> dest: /<*>"
    assert parsed.params == ("-1608999687919862906", "10.250.19.102:54106", "10.250.19.102:50010")
    assert parsed.header["Level"] == "INFO"
    assert parsed.header["Component"] == "dfs.DataNode$DataXceiver"
    assert HDFS.sessions(parsed) == ["blk_-1608999687919862906"]


def test_the_same_template_gets_the_same_key():
    parser = LogParser(HDFS, learn=True)
    first = parser.parse(RECEIVING, 1)
    second = parser.parse(RECEIVING.replace(b"blk_-1608999687919862906", b"blk_42"), 2)
    assert first.template_id == second.template_id
    assert len(parser.templates) == 1


def test_a_frozen_parser_maps_unseen_templates_to_unknown():
    learnt = LogParser(HDFS, learn=True)
    learnt.parse(RECEIVING, 1)
    frozen = LogParser(HDFS, templates=learnt.templates, learn=False)
    assert frozen.parse(RECEIVING, 1).template_id == 0
    unseen = frozen.parse(SERVED, 2)
    assert unseen.template_id == -1
    assert frozen.stats.unknown == 1
    assert frozen.templates == learnt.templates  # frozen never learns


def test_a_frozen_parser_grown_by_a_newer_vocabulary_matches_its_templates_old_ids_kept():
    learnt = LogParser(HDFS, learn=True)
    learnt.parse(RECEIVING, 1)
    frozen = LogParser(HDFS, templates=learnt.templates, learn=False)
    assert frozen.parse(SERVED, 1).template_id == -1
    learnt.parse(SERVED, 2)
    assert frozen.extend(learnt.templates) == 1
    assert frozen.parse(SERVED, 3).template_id == 1  # remembered unmatched before: not now
    assert frozen.parse(RECEIVING, 4).template_id == 0
    with pytest.raises(ValueError, match="do not extend"):
        frozen.extend(learnt.templates[::-1])


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
    parser = LogParser(HDFS, learn=True)
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
    parser = LogParser(HDFS, learn=True)
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


def _learn(lines, **rules):
    log_format = parse_format(
        'name = "t"\n[header]\nlayout = "<Content>"\n[sessions]\nwindow_lines = 100\n', "t"
    )
    log_format = replace(log_format, templates=TemplateRules(**rules))
    parser = LogParser(log_format, learn=True)
    ids = [parser.parse(line, i).template_id for i, line in enumerate(lines, 1)]
    return parser, ids


def test_a_position_keeps_its_words_as_templates_until_it_takes_branch_limit_of_them():
    events = ["Started", "Paused", "Resumed"]
    parser, ids = _learn(
        [f"[instance: {i}] VM {e} (Lifecycle Event)" for i, e in enumerate(events * 3)],
        branch_limit=4,
    )
    assert len(parser.templates) == 3, "three events, three templates"
    assert "[instance: <*>] VM Paused (Lifecycle Event)" in parser.templates
    users = ["alice", "bob", "carol", "dave"]
    parser, ids = _learn([f"session opened for user {u}" for u in users], branch_limit=4)
    assert parser.templates == ("session opened for user <*>",)
    assert {parser.final_id(i) for i in ids} == {0}, "early lines end in the merged template"
    assert len(set(ids)) == 3, "the first three users each had a template on arrival"


def test_a_number_makes_its_position_a_variable_unless_numbers_branch():
    lines = ["Fan speeds ( 3552 3534 )", "Fan speeds ( 3552 **** )", "Fan speeds ( 1 2 )"]
    parser, _ = _learn(lines)
    assert parser.templates == ("Fan speeds ( <*> <*> )",)
    parser, _ = _learn(lines, numbers_branch=True)
    assert set(parser.templates) == {"Fan speeds ( <*> <*> )", "Fan speeds ( <*> **** )"}


def test_ever_new_numbers_never_grow_the_template_set():
    rng = random.Random(0)
    lines = [
        f"job {rng.randrange(10**9)} took {rng.random() * 1e4:.3f} ms on node-{rng.randrange(999)}"
        f" (0x{rng.randrange(16**8):08x})"
        for _ in range(20_000)
    ]
    parser, _ = _learn(lines)
    assert len(parser.templates) == 1
    assert parser.templates[0] == "job <*> took <*> ms on node-<*> (<*>)"


def test_learning_stops_at_max_templates_and_counts_what_it_could_not_keep():
    parser = LogParser(replace(HDFS, templates=TemplateRules(max_templates=2)), learn=True)
    for i, line in enumerate([RECEIVING, SERVED, RECEIVING.replace(b"Receiving", b"Sending")]):
        parser.parse(line.replace(b"src", b"from"), i)
    assert len(parser.templates) == 2
    assert parser.stats.malformed == {TEMPLATE_LIMIT: 1}


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_a_frozen_parser_matches_the_templates_it_was_built_from_exactly(system, loghub_dir):
    # Every line of every sample: also what proves the memo (contents keyed with their digits
    # as 0) answers as the matcher would.
    raw = (loghub_dir / system / f"{system}_2k.log").read_bytes().splitlines()
    log_format = builtin(SYSTEMS[system])
    learnt = LogParser(log_format, learn=True)
    arrived = [learnt.parse(line, i).template_id for i, line in enumerate(raw, 1)]
    ids = [learnt.final_id(i) for i in arrived]
    frozen = LogParser(log_format, templates=learnt.templates, learn=False)
    assert [frozen.parse(line, i).template_id for i, line in enumerate(raw, 1)] == ids


def test_a_token_mask_makes_its_token_a_variable_and_a_line_mask_may_span_tokens():
    rules = TemplateRules(masks=(r"([\w-]+\.){2,}[\w-]+",), line_masks=(r'(?<=tag=")[^"]*',))
    assert tokenize('lock by com.android.phone tag="View Lock" ok', rules) == [
        "lock",
        "by",
        WILDCARD,
        WILDCARD,  # tag="<*>"
        "ok",
    ]
    assert tokenize("a=1,b=x", TemplateRules(delimiters=",=")) == ["a", WILDCARD, "b", "x"]


def _letters(i: int) -> str:
    """An id without digits: the memo writes digits as 0, so only letters keep lines apart."""
    return str(i).translate(str.maketrans("0123456789", "abcdefghij"))


def test_frozen_matching_remembers_contents_alike_but_for_digits_and_pauses_where_none_repeat():
    templates = ("Receiving block blk_<*> src: <*> dest: <*>", "Served block blk_<*> to <*>")
    parser = LogParser(builtin("hdfs"), templates=templates, learn=False)
    distinct = [
        f"Receiving block blk_{_letters(i)} src: /{_letters(i)} dest: /10.0.0.2:50010"
        for i in range(3000)
    ]
    assert {parser.match_content(c) for c in distinct} == {0}
    assert parser.sizes().contents == 0  # no content came twice: the memo paused
    repeated = [
        "Served block blk_7 to /10.0.0.3",
        "Heartbeat from node 4",
        "Served block blk_8 to /10.0.0.4",  # the first but for its digits
    ]
    fresh = LogParser(builtin("hdfs"), templates=templates, learn=False)
    answers = [fresh.match_content(c) for c in repeated * 1000]
    assert answers == [1, -1, 1] * 1000  # the same answers, unknown ones too
    assert fresh.sizes().contents == 2


def test_the_memo_keeps_digits_apart_where_a_line_mask_may_tell_them_apart():
    rules = TemplateRules(line_masks=(r"port 80\b",))
    parser = LogParser(replace(HDFS, templates=rules), templates=("open <*>",), learn=False)
    assert [parser.match_content(c) for c in ["open port 80", "open port 81"] * 100] == [
        0,
        -1,
    ] * 100


def test_a_paused_content_memo_probes_again_after_the_pause(monkeypatch):
    monkeypatch.setattr("client.parsing._LINE_PAUSE", 500)
    parser = LogParser(builtin("hdfs"), templates=("Served block blk_<*> to <*>",), learn=False)
    header = "081109 203615 148 INFO dfs.DataNode$DataXceiver: "
    for i in range(200):  # never the same twice: paused after the first 128
        parser.parse(f"{header}Served block blk_{_letters(i)} to /{_letters(i)}", i + 1)
    assert parser.sizes().contents == 0
    for i in range(200, 1200):  # the same line over and over: remembered once probed again
        assert parser.parse(f"{header}Served block blk_7 to /10.0.0.1", i + 1).template_id == 0
    assert parser.sizes().contents == 1
