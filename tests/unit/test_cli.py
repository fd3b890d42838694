"""The command line: thin commands, clear errors."""

import shutil
from pathlib import Path

import pytest

from client.cli import COMMANDS, build_parser, main
from client.cli.args import program


def test_every_command_parses_and_has_a_handler():
    parser = build_parser()
    args = parser.parse_args(["train", "normal.log", "--format", "bgl", "--params", "torchscript"])
    assert (args.command, args.log_format, args.params) == ("train", "bgl", "torchscript")
    assert args.log == Path("normal.log")
    assert parser.parse_args(["detect", "x.log", "--params", "onnx"]).params == "onnx"
    assert set(COMMANDS) == {
        "demo",
        "train",
        "detect",
        "feedback",
        "retrain",
        "rollback",
        "parse",
        "train-asgnet",
        "publish",
        "workflow",
    }
    bus = parser.parse_args(
        ["detect", "--source", "nats://bus:4222/logs", "--url", "dns:///t:8001"]
    )
    assert (bus.log, bus.source, bus.url) == (None, "nats://bus:4222/logs", "dns:///t:8001")
    fb = parser.parse_args(["feedback", "confirm", "abc123", "--label", "truncated"])
    assert (fb.action, fb.alert_id, fb.label) == ("confirm", "abc123", "truncated")


def test_a_bad_bus_or_server_address_is_a_one_line_error(tmp_path, capsys):
    log = tmp_path / "x.log"
    log.write_text("081109 203615 148 INFO dfs.DataNode: blk_1 ok\n")
    assert main(["publish", "x.log", "--to", "http://bus:4222", "--format", "hdfs"]) == 1
    assert "a log bus is nats://HOST:PORT" in capsys.readouterr().err
    assert main(["detect", str(log), "--url", "http://triton:8001"]) == 1
    assert "host:port" in capsys.readouterr().err
    assert main(["detect", "x.log", "--source", "nats://bus:4222"]) == 2
    assert "or a log bus with --source" in capsys.readouterr().err


def test_rolling_back_a_model_that_does_not_exist_is_a_one_line_error(tmp_path, capsys):
    assert main(["rollback", "deeplog_kyes", "--repository", str(tmp_path)]) == 1
    assert "no model 'deeplog_kyes': one of [" in capsys.readouterr().err


def test_a_missing_log_is_a_one_line_error_not_a_traceback(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nowhere.log"), "--repository", str(tmp_path)]) == 1
    assert "nowhere.log" in capsys.readouterr().err


def test_watch_mode_wants_a_positive_count_and_interval(capsys):
    for bad in (["--watch", "0"], ["--watch", "2", "--interval", "-1"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["retrain", *bad])
        assert "must be above zero" in capsys.readouterr().err
    args = build_parser().parse_args(["retrain", "--watch", "3", "--interval", "0.5"])
    assert (args.watch, args.interval, args.cycles) == (3, 0.5, None)


def test_detect_refuses_what_it_cannot_do_before_it_connects(tmp_path, capsys):
    assert main(["detect", "-", "--follow"]) == 2
    assert "standard input can be neither followed nor resumed" in capsys.readouterr().err
    log = tmp_path / "app.log"
    log.write_text("x\n")
    assert main(["detect", str(log), "--checkpoint", str(tmp_path / "c")]) == 2
    assert "--checkpoint needs --alerts FILE" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "nowhere.log")]) == 1
    assert "no log file" in capsys.readouterr().err
    for bad in (["--max-delay", "0"], ["--session-idle", "-5"], ["--metrics-port", "70000"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["detect", str(log), *bad])


def test_hints_name_the_command_as_the_user_runs_it(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert program() == "python -m client"
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/local/bin/{name}")
    assert program() == "logad"
