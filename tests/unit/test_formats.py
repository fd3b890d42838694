"""Log formats described in files: every built-in one loads, a bad field is a one-line error that
names it, and the header, clock and session rules do what the file says."""

import pytest

from client.formats import (
    FormatError,
    TimeKind,
    builtin,
    builtin_names,
    load_format,
    parse_format,
    trained_format,
)
from client.parsing import LogParser

LOGHUB_NAMES = [
    "android",
    "apache",
    "bgl",
    "hadoop",
    "hdfs",
    "hpc",
    "openssh",
    "openstack",
    "spark",
    "thunderbird",
    "windows",
]

MINIMAL = """
name = "shop"
[header]
layout = '<Date> <Time> \\[<Level>\\] <Content>'  # logpai's layouts are regexes
[time]
fields = ["Date", "Time"]
layouts = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f"]
[sessions]
ids = ['order=(\\w+)']
otherwise = "{Level}"
"""


def test_the_built_in_formats_are_the_eleven_loghub_systems_and_all_load():
    assert builtin_names() == LOGHUB_NAMES
    for name in LOGHUB_NAMES:
        log_format = load_format(name)
        assert log_format.name == name and log_format.source
        assert "Content" not in log_format.fields


def test_a_layout_names_the_header_fields_and_the_content():
    log_format = parse_format(MINIMAL, "test")
    assert log_format.fields == ("Date", "Time", "Level")
    header, content = log_format.split("2026-12-02 10:00:00 [INFO] paid order=a1 in  3 s")
    assert header == {"Date": "2026-12-02", "Time": "10:00:00", "Level": "INFO"}
    assert content == "paid order=a1 in  3 s"
    assert log_format.split("no header here") is None


def test_sessions_come_from_id_regexes_else_from_header_fields():
    log_format = parse_format(MINIMAL, "test")
    parser = LogParser(log_format)
    with_ids = parser.parse("2026-12-02 10:00:00 [INFO] order=a1 joins order=b2 order=a1", 1)
    assert log_format.sessions(with_ids) == ["a1", "b2"]
    without = parser.parse("2026-12-02 10:00:01 [WARN] restock", 2)
    assert log_format.sessions(without) == ["WARN"]


def test_a_field_can_be_cut_by_a_regex_and_logs_without_ids_get_windows():
    openstack = builtin("openstack")
    line = (
        "nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:00.008 25746 INFO "
        "nova.osapi_compute.wsgi.server [req-1 - - -] GET /v2"
    )
    parsed = LogParser(openstack).parse(line, 1)
    assert openstack.sessions(parsed) == ["stream:nova-api:nova.osapi_compute.wsgi.server"]
    windows = parse_format(
        'name = "w"\n[header]\nlayout = "<Content>"\n[sessions]\nwindow_lines = 10\n', "w"
    )
    parser = LogParser(windows)
    ids = [windows.sessions(parser.parse(f"line {i}", i)) for i in range(1, 22)]
    assert ids[0] == ids[9] == ["lines:0"] and ids[10] == ["lines:1"] and ids[20] == ["lines:2"]


def test_the_clock_reads_any_of_its_layouts_epoch_seconds_or_nothing():
    log_format = parse_format(MINIMAL, "test")
    assert log_format.clock({"Date": "1970-01-01", "Time": "00:00:01"}) == 1.0
    assert log_format.clock({"Date": "1970-01-01", "Time": "00:00:01.5"}) == 1.5
    with pytest.raises(ValueError, match="matches none"):
        log_format.clock({"Date": "1970-13-01", "Time": "00:00:01"})
    hpc = builtin("hpc")
    assert hpc.clock.kind is TimeKind.EPOCH
    assert hpc.clock({"Time": "1077804742"}) == 1077804742.0
    untimed = parse_format(
        'name = "x"\n[header]\nlayout = "<Content>"\n[sessions]\nwindow_lines = 5\n', "x"
    )
    assert untimed.clock.kind is TimeKind.NONE and not untimed.clock.timed


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (("layout = ", "layuot = "), "[header] layuot: unknown field"),
        (("<Content>", "<Body>"), "[header] layout: needs <Content>"),
        (('fields = ["Date", "Time"]', 'fields = ["Date", "Clock"]'), "'Clock' is not a header"),
        (("ids = ['order=(\\w+)']", "ids = ['order=(\\w+']"), "[sessions] ids[0]: bad regular"),
        (('otherwise = "{Level}"', 'otherwise = "{Host}"'), "[sessions] otherwise: 'Host'"),
        (('name = "shop"', 'name = "my shop"'), "name: must be letters"),
        (('name = "shop"', "name = 3"), "name: must be str"),
        (("[time]", "[time]\nkind = 'lunar'"), "[time] kind: 'lunar' is not one of"),
        (("[header]", "[templates]\nbranch_limit = 1\n[header]"), "branch_limit must be"),
        (('name = "shop"', 'name = "shop'), "not valid TOML"),
    ],
)
def test_a_bad_field_is_a_one_line_error_that_names_it(change, named):
    old, new = change
    assert old in MINIMAL
    with pytest.raises(FormatError) as error:
        parse_format(MINIMAL.replace(old, new), "shop.toml")
    message = str(error.value)
    assert message.startswith("shop.toml: ") and named in message and "\n" not in message


def test_a_format_file_is_read_by_path_and_an_unknown_name_lists_the_built_in_ones(tmp_path):
    path = tmp_path / "shop.toml"
    path.write_text(MINIMAL)
    assert load_format(str(path)).name == "shop"
    with pytest.raises(FormatError, match=r"unknown format 'nginx'.*hdfs"):
        load_format("nginx")
    with pytest.raises(FormatError, match="cannot read"):
        load_format(str(tmp_path / "missing.toml"))


def test_a_version_reads_logs_with_the_format_it_was_trained_with_and_refuses_another(tmp_path):
    hdfs = builtin("hdfs")
    assert trained_format(hdfs.source, "deeplog_keys v1", None).digest == hdfs.digest
    assert trained_format(hdfs.source, "deeplog_keys v1", "hdfs").name == "hdfs"
    with pytest.raises(FormatError, match="not the format deeplog_keys v1 was trained with"):
        trained_format(hdfs.source, "deeplog_keys v1", "bgl")
    edited = tmp_path / "hdfs.toml"
    edited.write_text(hdfs.source.replace("idle_seconds = 7200", "idle_seconds = 60"))
    with pytest.raises(FormatError, match="leave --format out"):
        trained_format(hdfs.source, "deeplog_keys v1", str(edited))
    assert trained_format("", "deeplog_keys v1", None).name == "hdfs"  # an older version


def test_a_time_with_its_zone_is_read_in_that_zone():
    zoned = parse_format(
        MINIMAL.replace('layouts = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f"]',
                        'layouts = ["%Y-%m-%d %H:%M:%S%z"]'),
        "zoned",
    )  # fmt: skip
    assert zoned.clock({"Date": "1970-01-01", "Time": "02:00:00+0200"}) == 0.0
